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

    /// The file's bytes and the document they hold.
    async fn read(&self) -> Result<(Vec<u8>, RoutingConfig), String> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| format!("cannot read the routing file {}: {e}", self.path.display()))?;
        let config = parse(&bytes).map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok((bytes, config))
    }

    pub async fn load(&self) -> Result<RoutingConfig, String> {
        self.read().await.map(|(_, config)| config)
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

    /// Replaces the file with `config` unless it no longer holds `read`
    /// (someone outside the gateway wrote it since it was read): the bytes
    /// written, or `None` when the file changed and nothing was written.
    /// Off the async workers, since the write waits for the disk. Writers in
    /// this process hold `write` around the read and this call.
    async fn store_over(
        &self,
        read: Vec<u8>,
        config: &RoutingConfig,
    ) -> Result<Option<Vec<u8>>, String> {
        let (path, text) = (self.path.clone(), config.to_json().into_bytes());
        tokio::task::spawn_blocking(move || {
            if std::fs::read(&path)? != read {
                return Ok(None);
            }
            platform_runtime::files::replace(&path, &text, false).map(|()| Some(text))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|written| written.map_err(|e: std::io::Error| e.to_string()))
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
            let parsed = parse(&now);
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
                // An edit written after this read is not overwritten: it is
                // left for the next look.
                match self.store_over(now, &config).await {
                    Ok(Some(written)) => seen = Some(written),
                    Ok(None) => {}
                    Err(error) => tracing::error!(
                        %error,
                        "the hand edit is applied but could not be recorded in the file"
                    ),
                }
            }
        }
    }

    /// Reads the current document, applies `change`, bumps the generation,
    /// records the change, writes the file and swaps the live state. A file
    /// written from outside between the read and the write is not
    /// overwritten: the change is made again on what it holds now.
    pub async fn update(
        &self,
        routing: &Routing,
        metrics: &GatewayMetrics,
        mut change: impl FnMut(&mut RoutingConfig) -> Result<Option<Change>, String>,
    ) -> Result<(RoutingConfig, Option<Change>), String> {
        let _guard = self.write.lock().await;
        for _ in 0..5 {
            let (read, mut config) = self.read().await?;
            let mut record = change(&mut config)?;
            config.validate()?;
            if let Some(record) = record.as_mut() {
                config.bump(record);
            }
            if self.store_over(read, &config).await?.is_none() {
                continue;
            }
            if routing.publish_written(config.clone()) {
                metrics.observe_routing(&config);
            }
            return Ok((config, record));
        }
        Err(format!(
            "cannot update the routing file {}: it kept changing under us; retry",
            self.path.display()
        ))
    }
}

fn parse(bytes: &[u8]) -> Result<RoutingConfig, String> {
    std::str::from_utf8(bytes)
        .map_err(|_| "the routing file is not UTF-8".to_owned())
        .and_then(RoutingConfig::parse)
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
    ConfigMap(Box<crate::control::kube::ConfigMapSource>),
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
            RoutingSource::File(file) => file.load().await,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn document(generation: u64) -> RoutingConfig {
        let mut config = RoutingConfig::parse(
            r#"{"services":{"orders":{"endpoints":{"blue":["127.0.0.1:1"],"green":[]},
                "weights":{"blue":100,"green":0}}}}"#,
        )
        .expect("valid");
        config.generation = generation;
        config
    }

    #[tokio::test]
    async fn a_write_from_outside_since_the_read_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("routes.json");
        std::fs::write(&path, document(1).to_json()).expect("write");
        let file = RoutingFile::new(path.clone());
        let (read, _) = file.read().await.expect("read");
        let outside = document(7).to_json();
        std::fs::write(&path, &outside).expect("outside edit");
        let stored = file.store_over(read, &document(2)).await.expect("store");
        assert_eq!(stored, None);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), outside);
        let (read, _) = file.read().await.expect("read again");
        let stored = file.store_over(read, &document(8)).await.expect("store");
        assert_eq!(stored.as_deref(), Some(document(8).to_json().as_bytes()));
        assert_eq!(file.load().await.expect("load").generation, 8);
    }

    #[tokio::test]
    async fn an_update_is_made_on_what_the_file_holds_now() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("routes.json");
        std::fs::write(&path, document(1).to_json()).expect("write");
        let file = RoutingFile::new(path.clone());
        let routing = Routing::new(document(1));
        let metrics = GatewayMetrics::new();
        let mut calls = 0;
        let (config, _) = file
            .update(&routing, &metrics, |config| {
                calls += 1;
                if calls == 1 {
                    // Someone outside writes between this read and the write.
                    std::fs::write(&path, document(5).to_json()).expect("outside edit");
                }
                config.generation += 1;
                Ok(None)
            })
            .await
            .expect("update");
        assert_eq!(calls, 2);
        assert_eq!(config.generation, 6);
        assert_eq!(routing.snapshot().config.generation, 6);
    }
}
