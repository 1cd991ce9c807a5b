//! The control plane: the tasks that decide what the data plane serves.
//! The routing source's watcher, endpoint discovery, the TLS certificate
//! reload and the rollout watchdog run beside the listeners and reach the
//! request path only by publishing: a new routing snapshot
//! (`Routing::apply`/`replace`), a new certificate. The admin API, the other
//! writer, changes the source of truth the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::state::State;

pub(crate) struct ControlPlane {
    tasks: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    pub(crate) fn start(state: &Arc<State>) -> Self {
        let mut tasks = Vec::new();
        let watched = Arc::clone(state);
        tasks.push(tokio::spawn(async move {
            let every = watched.config.watch_interval;
            watched
                .source
                .watch(
                    watched.upstream.routing.clone(),
                    watched.upstream.metrics.clone(),
                    every,
                )
                .await;
        }));
        if let Some(discovery) = state.config.discovery.clone() {
            let routing = state.upstream.routing.clone();
            tasks.push(tokio::spawn(async move {
                discovery.run(routing, Duration::from_secs(1)).await
            }));
        }
        if let Some(tls) = state.tls.clone() {
            tasks.push(tokio::spawn(async move {
                tls.watch(Duration::from_secs(1)).await
            }));
        }
        tasks.push(tokio::spawn(crate::admin::watchdog(Arc::clone(state))));
        Self { tasks }
    }

    /// Stops every task; the last published state keeps serving the
    /// requests still in flight.
    pub(crate) fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}
