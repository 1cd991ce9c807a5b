//! `platformctl up --observe`: a local Prometheus beside the platform, with
//! the project's recording rules and alerts (built into this binary from
//! `observability/prometheus/rules`) and static targets for every process
//! of this platform, so the dashboards' queries and the alerts can be tried
//! on one machine. Prometheus is the one installed on this machine
//! (`prometheus` on PATH); it is supervised like the services.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use platform_runtime::Color;

use crate::ports::{self, SERVICES};
use crate::supervisor::ProcessSpec;

/// The rule files, as `observability/prometheus/rules` has them.
pub const RULES: [(&str, &str); 2] = [
    (
        "recording.yml",
        include_str!("../../observability/prometheus/rules/recording.yml"),
    ),
    (
        "alerts.yml",
        include_str!("../../observability/prometheus/rules/alerts.yml"),
    ),
];

/// Where Prometheus listens, shifted like every other port.
pub fn port(offset: i32) -> u16 {
    u16::try_from(9090 + offset).unwrap_or(0)
}

/// The `prometheus` binary on PATH, if there is one.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

/// The scrape configuration of this platform: the gateway (metrics on its
/// admin port) and both colors of every service (metrics on gRPC port +
/// 1000), the job names Compose uses.
pub fn config(offset: i32, replicas: usize, rules_dir: &Path) -> String {
    let (_, admin, _) = ports::gateway(offset);
    let mut services = Vec::new();
    for replica in 0..replicas {
        let offset = ports::replica_offset(offset, replica);
        for color in Color::ALL {
            for service in SERVICES {
                let port = ports::metrics(service, color, offset);
                services.push(format!("\"127.0.0.1:{port}\""));
            }
        }
    }
    format!(
        "# Written by platformctl up --observe; rewritten at every start.\n\
         global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n\
         rule_files:\n  - {rules}/*.yml\n\
         scrape_configs:\n\
         \x20 - job_name: gateway\n    static_configs:\n      - targets: [\"127.0.0.1:{admin}\"]\n\
         \x20 - job_name: services\n    static_configs:\n      - targets: [{services}]\n\
         \x20 - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n",
        rules = rules_dir.display(),
        services = services.join(", "),
        port = port(offset),
    )
}

/// Writes the configuration and the rules under `data_dir/prometheus` and
/// returns how to run Prometheus on them.
pub fn prepare(
    program: PathBuf,
    data_dir: &Path,
    offset: i32,
    replicas: usize,
) -> anyhow::Result<ProcessSpec> {
    let dir = data_dir.join("prometheus");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules)
        .with_context(|| format!("cannot create {}", rules.display()))?;
    for (name, text) in RULES {
        std::fs::write(rules.join(name), text)
            .with_context(|| format!("cannot write {}", rules.join(name).display()))?;
    }
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, self::config(offset, replicas, &rules))
        .with_context(|| format!("cannot write {}", config.display()))?;
    Ok(ProcessSpec {
        name: "prometheus".into(),
        program,
        args: vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            "--storage.tsdb.retention.time=2d".into(),
            format!("--web.listen-address=127.0.0.1:{}", port(offset)),
            "--web.enable-lifecycle".into(),
        ],
        env: Vec::new(),
        log: data_dir.join("logs").join("prometheus.log"),
        pid_file: data_dir.join("run").join("prometheus.pid"),
        grace: Duration::from_secs(10),
    })
}

/// Waits until Prometheus answers `/-/ready`.
pub async fn wait_until_ready(offset: i32, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port(offset)));
    loop {
        if ready(addr).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "Prometheus is not ready on {addr} after {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET /-/ready HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    reply.starts_with(b"HTTP/1.1 200")
}
