//! The routing file: the source of truth outside Kubernetes. The gateway
//! watches it (a change by hand or by another gateway replica is applied
//! within a poll interval) and writes admin changes to it atomically (a
//! temporary file renamed over it), so every replica and a restarted gateway
//! agree. An invalid document is refused and the last good state keeps serving.

use std::path::PathBuf;
use std::time::Duration;

use crate::metrics::GatewayMetrics;
use crate::routing::{Change, Routing, RoutingConfig};

#[derive(Debug)]
pub struct RoutingFile {
    path: PathBuf,
    /// Serializes writers in this process; the rename makes each write atomic.
    write: tokio::sync::Mutex<()>,
}

impl RoutingFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            write: tokio::sync::Mutex::new(()),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn load(&self) -> Result<RoutingConfig, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read the routing file {}: {e}", self.path.display()))?;
        RoutingConfig::parse(&text).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Writes `initial` as the routing file if there is none yet; an existing
    /// file (admin changes, or another replica's seed) is left as it is.
    pub fn seed(&self, initial: &str) -> Result<(), String> {
        if self.path.exists() {
            return Ok(());
        }
        let fail = |e: std::io::Error| {
            format!(
                "cannot create the routing file {}: {e}",
                self.path.display()
            )
        };
        let tmp = self
            .path
            .with_extension(format!("seed-{}", std::process::id()));
        write_synced(&tmp, initial.as_bytes()).map_err(fail)?;
        // A hard link never replaces a file a concurrent replica created.
        let linked = std::fs::hard_link(&tmp, &self.path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(fail(e)),
            _ => Ok(()),
        }
    }

    /// Applies the file whenever its contents change.
    pub async fn watch(&self, routing: Routing, metrics: GatewayMetrics, every: Duration) {
        let mut seen = std::fs::read(&self.path).ok();
        loop {
            tokio::time::sleep(every).await;
            // Read and applied under the writers' lock: a read taken just
            // before an admin change lands would otherwise be applied after
            // it and put the older state back.
            let _guard = self.write.lock().await;
            let Ok(now) = std::fs::read(&self.path) else {
                continue;
            };
            if seen.as_deref() == Some(now.as_slice()) {
                continue;
            }
            seen = Some(now.clone());
            let parsed = std::str::from_utf8(&now)
                .map_err(|_| "the routing file is not UTF-8".to_owned())
                .and_then(RoutingConfig::parse);
            apply(&routing, &metrics, parsed, "routing file");
        }
    }

    /// Reads the current document, applies `change`, bumps the generation,
    /// records the change, writes the file and swaps the live state.
    pub async fn update(
        &self,
        routing: &Routing,
        metrics: &GatewayMetrics,
        mut change: impl FnMut(&mut RoutingConfig) -> Result<Option<Change>, String>,
    ) -> Result<(RoutingConfig, Option<Change>), String> {
        let _guard = self.write.lock().await;
        let mut config = self.load()?;
        let mut record = change(&mut config)?;
        config.validate()?;
        if let Some(record) = record.as_mut() {
            config.bump(record);
        }
        let tmp = self.path.with_extension("tmp");
        write_synced(&tmp, config.to_json().as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| format!("cannot write the routing file {}: {e}", self.path.display()))?;
        metrics.observe_routing(&config);
        routing.replace(config.clone());
        Ok((config, record))
    }
}

fn write_synced(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Swaps in a changed routing document, or refuses an invalid one and keeps
/// serving the last good state. `from` names the source in the log.
pub fn apply(
    routing: &Routing,
    metrics: &GatewayMetrics,
    parsed: Result<RoutingConfig, String>,
    from: &str,
) {
    match parsed {
        Ok(config) => {
            if routing.snapshot().config != config {
                tracing::info!(generation = config.generation, "{from} changed; applied");
                metrics.observe_routing(&config);
                routing.replace(config);
            }
        }
        Err(error) => {
            metrics.reload_failures.inc();
            tracing::error!(%error, "{from} change refused; the last good routing keeps serving");
        }
    }
}

/// Where the routing state lives: a file, or a ConfigMap in a cluster.
#[derive(Debug)]
pub enum RoutingSource {
    File(RoutingFile),
    ConfigMap(Box<crate::kube::ConfigMapSource>),
}

impl RoutingSource {
    pub fn describe(&self) -> String {
        match self {
            RoutingSource::File(file) => format!("file {}", file.path().display()),
            RoutingSource::ConfigMap(cm) => cm.describe(),
        }
    }

    pub async fn load(&self) -> Result<RoutingConfig, String> {
        match self {
            RoutingSource::File(file) => file.load(),
            RoutingSource::ConfigMap(cm) => cm.load().await,
        }
    }

    pub async fn watch(&self, routing: Routing, metrics: GatewayMetrics, every: Duration) {
        match self {
            RoutingSource::File(file) => file.watch(routing, metrics, every).await,
            RoutingSource::ConfigMap(cm) => cm.watch(routing, metrics).await,
        }
    }

    pub async fn update(
        &self,
        routing: &Routing,
        metrics: &GatewayMetrics,
        change: impl FnMut(&mut RoutingConfig) -> Result<Option<Change>, String>,
    ) -> Result<(RoutingConfig, Option<Change>), String> {
        match self {
            RoutingSource::File(file) => file.update(routing, metrics, change).await,
            RoutingSource::ConfigMap(cm) => cm.update(routing, metrics, change).await,
        }
    }
}
