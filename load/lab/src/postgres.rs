//! A throwaway PostgreSQL cluster of this machine's installation, for the
//! database drill: created in a temporary directory, listening on loopback
//! only, stopped and started on demand, removed at the end. initdb and
//! postgres refuse to run as root, so as root they run as `postgres`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Off for drills (speed); on for benchmarks, where durability is what is paid for.
    fsync: bool,
}

fn newest_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql): run scripts/install-tools.sh")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .context("no PostgreSQL binaries under /usr/lib/postgresql")
}

/// Whether this process runs as root (the effective uid in /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

impl Cluster {
    /// initdb, then start on 127.0.0.1:`port` with fsync off.
    pub fn create(port: u16) -> anyhow::Result<Cluster> {
        Cluster::create_with(port, false)
    }

    /// As `create`, with fsync on: commits as durable as in production.
    pub fn create_durable(port: u16) -> anyhow::Result<Cluster> {
        Cluster::create_with(port, true)
    }

    fn create_with(port: u16, fsync: bool) -> anyhow::Result<Cluster> {
        let bin = newest_bin()?;
        let dir = tempfile::Builder::new().prefix("drill-pg").tempdir()?;
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(
                status.success(),
                "cannot hand {} to postgres",
                dir.path().display()
            );
        }
        let cluster = Cluster {
            dir,
            bin,
            port,
            fsync,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        )?;
        cluster.start()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(tool);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = command
            .args(args)
            .output()
            .with_context(|| format!("cannot run {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    pub fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-k {} -h 127.0.0.1 -p {} -c fsync={} -c max_connections=200",
            self.dir.path().display(),
            self.port,
            if self.fsync { "on" } else { "off" }
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        )
    }

    /// A fast shutdown: open sessions are cut, as in a failover or a crash
    /// of the database host.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }

    /// The data directory lost: the server killed (as a host that dies)
    /// and its directory removed.
    pub fn destroy(&self) -> anyhow::Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )?;
        std::fs::remove_dir_all(self.dir.path().join("data"))
            .with_context(|| format!("cannot remove {}", self.data()))
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The postmaster's pid, from the first line of `postmaster.pid`.
    pub fn postmaster_pid(&self) -> anyhow::Result<u32> {
        let file = self.dir.path().join("data").join("postmaster.pid");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        Ok(text.lines().next().unwrap_or_default().trim().parse()?)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }
}
