//! The platform under test: `platformctl up` on shifted ports with its own
//! data directory, stopped the way an operator stops it (SIGINT, so every
//! service drains) when the run ends, fails or is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::http;

/// How to start the platform.
#[derive(Debug, Clone)]
pub struct Config {
    pub platformctl: PathBuf,
    pub port_offset: i32,
    pub blue_version: String,
    pub green_version: String,
    /// KEY=VALUE for every green process (the fault).
    pub green_env: Vec<String>,
    /// More arguments for `up` (`--replicas 2`, `--postgres <url>`).
    pub extra_args: Vec<String>,
    pub ready_timeout: Duration,
}

impl Config {
    pub fn gateway_port(&self) -> u16 {
        shifted(8080, self.port_offset)
    }

    pub fn admin_port(&self) -> u16 {
        shifted(9901, self.port_offset)
    }
}

fn shifted(base: i32, offset: i32) -> u16 {
    u16::try_from(base + offset).unwrap_or(0)
}

/// How long `up` gets to drain and stop every process after SIGINT.
const STOP_GRACE: Duration = Duration::from_secs(45);

/// A running `platformctl up`.
pub struct Platform {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub admin_port: u16,
    pub gateway_port: u16,
    pub token: String,
    log: PathBuf,
}

impl Platform {
    /// Starts `up` with a fresh data directory under `work` and waits for
    /// the gateway's `/ready`.
    pub async fn start(config: &Config, work: &Path) -> anyhow::Result<Platform> {
        let data_dir = work.join("data");
        let log = work.join("up.log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(&config.platformctl);
        command
            .arg("up")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg(format!("--port-offset={}", config.port_offset))
            .arg("--blue-version")
            .arg(&config.blue_version)
            .arg("--green-version")
            .arg(&config.green_version)
            .arg("--ready-timeout-secs")
            .arg(config.ready_timeout.as_secs().to_string());
        for pair in &config.green_env {
            command.arg("--green-env").arg(pair);
        }
        command.args(&config.extra_args);
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it: cargo build --release -p platformctl)",
                    config.platformctl.display()
                )
            })?;
        let mut platform = Platform {
            child: Some(child),
            data_dir,
            admin_port: config.admin_port(),
            gateway_port: config.gateway_port(),
            token: String::new(),
            log,
        };
        platform.wait_ready(config.ready_timeout).await?;
        let token_file = platform.data_dir.join("admin-token");
        platform.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read the admin token {}", token_file.display()))?
            .trim()
            .to_owned();
        Ok(platform)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let since = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "platformctl up exited ({status}) before the gateway was ready:\n{}",
                    tail(&self.log, 20)
                );
            }
            let ready = http::get(self.admin_port, "/ready", None, Duration::from_secs(1)).await;
            if ready.is_ok_and(|reply| reply.status == 200) {
                return Ok(());
            }
            if since.elapsed() > timeout {
                bail!(
                    "the gateway is not ready on 127.0.0.1:{} after {} s:\n{}",
                    self.admin_port,
                    timeout.as_secs(),
                    tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    /// The machine lost: `kill -9` of `up` and of every process it runs.
    pub fn kill(mut self) -> anyhow::Result<()> {
        let run = self.data_dir.join("run");
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for entry in std::fs::read_dir(&run)?.flatten() {
            if let Ok(pid) = std::fs::read_to_string(entry.path())
                .unwrap_or_default()
                .trim()
                .parse::<i32>()
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        Ok(())
    }

    /// SIGINT, then waits for every process to stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        interrupt(&child);
        let since = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    bail!(
                        "platformctl up stopped with {status}:\n{}",
                        tail(&self.log, 10)
                    )
                };
            }
            if since.elapsed() > STOP_GRACE {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "platformctl up did not stop within {} s of SIGINT; killed",
                    STOP_GRACE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn interrupt(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    }
}

/// On an error or an interruption the platform still stops with SIGINT
/// (so its services drain and exit with it), waiting here if need be.
impl Drop for Platform {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        interrupt(&child);
        let since = Instant::now();
        while since.elapsed() < STOP_GRACE {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            format!(
                "{} (last lines of {})",
                all[start..].join("\n"),
                path.display()
            )
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}
