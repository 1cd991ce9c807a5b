//! A SQLite backup on disk: one directory per backup under the repository,
//! named by the time it was taken, holding each service's copy and a
//! `manifest.json` written last (a directory without one is a backup that
//! never finished, and is not listed).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FILE: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub store: String,
    /// When the first copy started and the last one ended (ms since the epoch).
    pub started_ms: i64,
    pub finished_ms: i64,
    /// The platformctl release that took it.
    pub release: String,
    pub databases: Vec<Database>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Database {
    pub service: String,
    pub file: String,
    /// The highest migration applied to it, and that migration's name.
    pub schema: i64,
    pub migration: String,
    /// When its copy was taken: what it holds is the database as of then.
    pub taken_ms: i64,
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a backup manifest (damaged?): take a new backup",
                path.display()
            )
        })
    }

    /// Writes the manifest durably: the backup exists from here on.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        let partial = dir.join(".manifest.json.partial");
        std::fs::write(&partial, text + "\n")?;
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, dir.join(FILE))?;
        sync_dir(dir)
    }

    pub fn database(&self, service: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.service == service)
    }

    pub fn bytes(&self) -> u64 {
        self.databases.iter().map(|d| d.bytes).sum()
    }
}

/// Every finished backup in `repo`, oldest first.
pub fn all(repo: &Path) -> anyhow::Result<Vec<(PathBuf, Manifest)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(repo) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", repo.display())),
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if dir.join(FILE).is_file() {
            found.push((dir.clone(), Manifest::read(&dir)?));
        }
    }
    found.sort_by_key(|(_, m)| m.started_ms);
    Ok(found)
}

/// The hex SHA-256 of a file and its size.
pub fn checksum(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buffer[..n]);
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, bytes))
}

/// Makes a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// A backup's name: the UTC time it started, sortable and file-safe.
pub fn id_of(ms: i64) -> String {
    let utc = platform_runtime::time::utc(ms);
    format!(
        "{}-{:03}",
        utc.replace(['-', ':'], "").replace(' ', "T"),
        ms.rem_euclid(1000)
    )
}
