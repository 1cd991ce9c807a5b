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
        platform_runtime::files::create_once(&self.path, initial.as_bytes(), false)
            .map(drop)
            .map_err(|e| {
                format!(
                    "cannot create the routing file {}: {e}",
                    self.path.display()
                )
            })
    }

    /// Replaces the file with `config`, off the async workers (the write
    /// waits for the disk).
    async fn store(&self, config: &RoutingConfig) -> Result<(), String> {
        let (path, text) = (self.path.clone(), config.to_json());
        tokio::task::spawn_blocking(move || {
            platform_runtime::files::replace(&path, text.as_bytes(), false)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|written| written.map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot write the routing file {}: {e}", self.path.display()))
    }

    /// Applies the file whenever its contents change.
    ///
    /// A valid edit by hand (its generation not above the live one) is
    /// recorded as one: the generation is bumped, each service whose
    /// weights it moved gets a `changes` entry by "routing file", and the
    /// file is written back, so every replica and `history` see it.
    pub async fn watch(&self, routing: Routing, metrics: GatewayMetrics, every: Duration) {
        // Nothing seen yet: the first look compares the file with what is
        // served (it was loaded at start), so an edit made between the
        // start and this task's first read is not taken as already seen.
        let mut seen: Option<Vec<u8>> = None;
        loop {
            tokio::time::sleep(every).await;
            // Read and applied under the writers' lock: a read taken just
            // before an admin change lands would otherwise be applied after
            // it and put the older state back.
            let _guard = self.write.lock().await;
            let Ok(now) = tokio::fs::read(&self.path).await else {
                continue;
            };
            if seen.as_deref() == Some(now.as_slice()) {
                continue;
            }
            seen = Some(now.clone());
            let parsed = std::str::from_utf8(&now)
                .map_err(|_| "the routing file is not UTF-8".to_owned())
                .and_then(RoutingConfig::parse);
            let mut edited = None;
            let parsed = parsed.map(|mut config| {
                let live = &routing.snapshot().config;
                if config != *live && config.generation <= live.generation {
                    record_hand_edit(live, &mut config);
                    edited = Some(config.clone());
                }
                config
            });
            // Served at once; recorded in the file after (the write waits
            // for the disk).
            routing.apply(&metrics, parsed, "routing file");
            if let Some(config) = edited {
                match self.store(&config).await {
                    Ok(()) => seen = tokio::fs::read(&self.path).await.ok(),
                    Err(error) => tracing::error!(
                        %error,
                        "the hand edit is applied but could not be recorded in the file"
                    ),
                }
            }
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
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| format!("cannot read the routing file {}: {e}", self.path.display()))?;
        let mut config =
            RoutingConfig::parse(&text).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let mut record = change(&mut config)?;
        config.validate()?;
        if let Some(record) = record.as_mut() {
            config.bump(record);
        }
        self.store(&config).await?;
        metrics.observe_routing(&config);
        routing.replace(config.clone());
        Ok((config, record))
    }
}

/// Bumps the generation of a document edited by hand past the live one and
/// records a change for each service whose weights the edit moved.
fn record_hand_edit(live: &RoutingConfig, edited: &mut RoutingConfig) {
    edited.generation = edited.generation.max(live.generation);
    let moved: Vec<Change> = edited
        .services
        .iter()
        .filter_map(|(name, now)| {
            let before = live.services.get(name).map(|s| s.weights);
            (before != Some(now.weights)).then(|| Change {
                generation: 0,
                at_ms: platform_runtime::time::now_ms(),
                who: "routing file".to_owned(),
                service: name.clone(),
                action: "edit".to_owned(),
                before: before.unwrap_or(now.weights),
                after: now.weights,
            })
        })
        .collect();
    if moved.is_empty() {
        // Endpoints or other settings only: a new generation all the same.
        edited.generation += 1;
    }
    for mut change in moved {
        edited.bump(&mut change);
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
