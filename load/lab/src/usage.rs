//! What each process of `platformctl up` uses, read from /proc through its
//! pid file in `<data-dir>/run`: CPU seconds so far and resident memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::procs;

/// The platform's processes by name (`gateway`, `orders-blue`, ...).
#[derive(Debug, Clone)]
pub struct Processes {
    pid_files: BTreeMap<String, PathBuf>,
    ticks: f64,
    /// PostgreSQL's postmaster, counted with its backends as `postgres`.
    database: Option<u32>,
}

/// A value per process name.
pub type PerProcess = BTreeMap<String, f64>;

impl Processes {
    /// Every `*.pid` in `<data_dir>/run` except Prometheus's.
    pub fn of(data_dir: &Path) -> anyhow::Result<Processes> {
        let run = data_dir.join("run");
        let mut pid_files = BTreeMap::new();
        for entry in std::fs::read_dir(&run).with_context(|| format!("no {}", run.display()))? {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pid"))
            else {
                continue;
            };
            if name != "prometheus" {
                pid_files.insert(name.to_owned(), path.clone());
            }
        }
        anyhow::ensure!(!pid_files.is_empty(), "no pid files in {}", run.display());
        Ok(Processes {
            pid_files,
            ticks: procs::clock_ticks(),
            database: None,
        })
    }

    /// Counts a database server too: the postmaster and every process it forked.
    pub fn with_database(mut self, postmaster: u32) -> Processes {
        self.database = Some(postmaster);
        self
    }

    /// CPU seconds (user + system) of every process so far.
    pub fn cpu(&self) -> anyhow::Result<PerProcess> {
        let mut cpu = self
            .pid_files
            .iter()
            .map(|(name, file)| Ok((name.clone(), procs::cpu_seconds(file, self.ticks)?)))
            .collect::<anyhow::Result<PerProcess>>()?;
        if let Some(postmaster) = self.database {
            cpu.insert("postgres".into(), tree_cpu_ticks(postmaster)? / self.ticks);
        }
        Ok(cpu)
    }

    pub fn ticks(&self) -> f64 {
        self.ticks
    }

    /// Resident memory of every process now, in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<PerProcess> {
        self.pid_files
            .iter()
            .map(|(name, file)| {
                let pid = std::fs::read_to_string(file)?;
                let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))?;
                Ok((
                    name.clone(),
                    vm_rss_kib(&status).context("no VmRSS")? / 1024.0,
                ))
            })
            .collect()
    }
}

/// CPU ticks of a process, of its exited children (which it reaped), and of
/// its live children: a forking server's whole cost.
fn tree_cpu_ticks(parent: u32) -> anyhow::Result<f64> {
    let own = std::fs::read_to_string(format!("/proc/{parent}/stat"))
        .with_context(|| format!("no process {parent}"))?;
    let mut total = stat_ticks(&own, true).context("bad /proc stat")?;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if stat_field(&stat, 1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            total += stat_ticks(&stat, false).unwrap_or(0.0);
        }
    }
    Ok(total)
}

/// Field `index` after the command name of a /proc/<pid>/stat line (0 is the state).
fn stat_field(stat: &str, index: usize) -> Option<&str> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(index)
}

/// utime + stime, and with `children` the reaped children's cutime + cstime.
fn stat_ticks(stat: &str, children: bool) -> Option<f64> {
    let fields = if children { 11..15 } else { 11..13 };
    fields
        .map(|i| stat_field(stat, i)?.parse::<f64>().ok())
        .sum()
}

/// Seconds every core of the machine was busy so far (/proc/stat: all
/// but idle and iowait), to tell the platform's CPU from everything else's.
pub fn machine_busy_seconds(ticks: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    busy_ticks(&stat)
        .map(|t| t / ticks)
        .context("no cpu line in /proc/stat")
}

/// The busy ticks of /proc/stat's first line.
pub fn busy_ticks(stat: &str) -> Option<f64> {
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = fields.iter().take(8).sum::<f64>() - fields.get(3)? - fields.get(4)?;
    Some(busy)
}

/// VmRSS from /proc/<pid>/status, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Milliseconds of CPU per call of every process between two readings.
pub fn ms_per_call(before: &PerProcess, after: &PerProcess, calls: u64) -> PerProcess {
    let calls = calls.max(1) as f64;
    after
        .iter()
        .map(|(name, spent)| {
            let earlier = before.get(name).copied().unwrap_or(*spent);
            (name.clone(), (spent - earlier) * 1000.0 / calls)
        })
        .collect()
}

/// The larger value of each process.
pub fn max_of(a: &PerProcess, b: &PerProcess) -> PerProcess {
    let mut out = a.clone();
    for (name, value) in b {
        let entry = out.entry(name.clone()).or_insert(*value);
        *entry = entry.max(*value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per(pairs: &[(&str, f64)]) -> PerProcess {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn cpu_per_call() {
        let before = per(&[("gateway", 1.0), ("orders-blue", 2.0)]);
        let after = per(&[("gateway", 3.0), ("orders-blue", 2.5)]);
        assert_eq!(
            ms_per_call(&before, &after, 1000),
            per(&[("gateway", 2.0), ("orders-blue", 0.5)])
        );
    }

    #[test]
    fn peaks_and_rss() {
        let a = per(&[("gateway", 1.0), ("auth-blue", 5.0)]);
        let b = per(&[("gateway", 3.0)]);
        assert_eq!(max_of(&a, &b), per(&[("auth-blue", 5.0), ("gateway", 3.0)]));
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t  12900 kB\n"), Some(12_900.0));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_fields_of_a_stat_line() {
        let stat = "42 (postgres: x) S 7 42 42 0 -1 4194560 10 0 0 0 300 200 5 6 20 0 1 0";
        assert_eq!(stat_field(stat, 1), Some("7"));
        assert_eq!(stat_ticks(stat, false), Some(500.0));
        assert_eq!(stat_ticks(stat, true), Some(511.0));
        assert!(tree_cpu_ticks(std::process::id()).expect("tree") >= 0.0);
    }

    #[test]
    fn machine_busy() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3\n";
        assert_eq!(busy_ticks(stat), Some(161.0));
        assert_eq!(busy_ticks("intr 1\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("run")).expect("run");
        let me = std::process::id().to_string();
        std::fs::write(dir.path().join("run/gateway.pid"), &me).expect("pid");
        std::fs::write(dir.path().join("run/prometheus.pid"), &me).expect("pid");
        let processes = Processes::of(dir.path()).expect("processes");
        assert_eq!(processes.cpu().expect("cpu").len(), 1);
        assert!(processes.rss_mib().expect("rss")["gateway"] > 0.0);
    }
}
