//! Keeps one service process running: starts it with its environment and
//! log file, restarts it with backoff when it dies (a `kill -9` is a real
//! fault, and it comes back), and stops it with SIGTERM, then SIGKILL after
//! a grace period, when asked.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Variables a child must never inherit from the shell: `up` sets them per process.
const OWN_VARS: [&str; 6] = [
    "COLOR",
    "LISTEN_ADDR",
    "METRICS_ADDR",
    "DATA_DIR",
    "DATABASE_URL",
    "VERSION",
];

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// For example `orders-blue`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    pub grace: Duration,
}

fn spawn(spec: &ProcessSpec) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    for var in OWN_VARS {
        command.env_remove(var);
    }
    command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    let child = command.spawn()?;
    if let Some(pid) = child.id() {
        std::fs::write(&spec.pid_file, format!("{pid}\n"))?;
    }
    Ok(child)
}

/// The last non-empty line of a log file: where a service says why it stopped.
fn last_line(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Runs `spec` until `stop` turns true. A process that exits because its
/// configuration is invalid is not restarted (it would fail the same way):
/// the reason goes to `fatal`.
pub async fn supervise(
    spec: ProcessSpec,
    mut stop: watch::Receiver<bool>,
    fatal: tokio::sync::mpsc::UnboundedSender<String>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(err) => {
                eprintln!(
                    "{}: cannot start: {err}; retrying in {} ms",
                    spec.name,
                    backoff.as_millis()
                );
                if wait_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(8));
                continue;
            }
        };
        let status = tokio::select! {
            status = child.wait() => status,
            _ = stopped(&mut stop) => {
                terminate(&mut child, spec.grace, &spec.name).await;
                break;
            }
        };
        if *stop.borrow() {
            break;
        }
        if let Ok(status) = &status
            && status.code() == Some(platform_runtime::config::EXIT_CONFIG)
        {
            let reason = last_line(&spec.log);
            let _ = fatal.send(format!(
                "{}: {}",
                spec.name,
                reason.trim_start_matches("error: ")
            ));
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        eprintln!(
            "{} exited ({status}); restarting in {} ms (log: {})",
            spec.name,
            backoff.as_millis(),
            spec.log.display()
        );
        if wait_or_stop(&mut stop, backoff).await {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(8));
    }
    let _ = std::fs::remove_file(&spec.pid_file);
}

/// Sleeps for `delay`; true when stop was asked meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stopped(stop) => {}
    }
    *stop.borrow()
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn terminate(child: &mut Child, grace: Duration, name: &str) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        eprintln!(
            "{name} did not stop within {} s; killing it",
            grace.as_secs()
        );
        let _ = child.kill().await;
    }
}
