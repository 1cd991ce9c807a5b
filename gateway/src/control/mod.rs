//! The control plane: the tasks that decide what the data plane serves.
//! The routing source's watcher, endpoint discovery, the TLS certificate
//! reload and the rollout watchdog run beside the listeners and reach the
//! request path only by publishing: a new routing snapshot
//! (`Routing::apply`/`replace`), a new certificate. The admin API, the other
//! writer, changes the source of truth the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::control::admin::AdminApi;
use crate::control::kube::EndpointDiscovery;

pub mod admin;
pub mod console;
pub mod kube;
pub(crate) mod probe;
pub mod source;

pub(crate) struct ControlPlane {
    tasks: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    pub(crate) fn start(admin: &AdminApi, discovery: Option<EndpointDiscovery>) -> Self {
        let state = &admin.0;
        let mut tasks = Vec::new();
        let watched = Arc::clone(state);
        tasks.push(tokio::spawn(async move {
            let every = watched.proxy.config.watch_interval;
            let upstream = &watched.proxy.upstream;
            watched
                .source
                .watch(upstream.routing.clone(), upstream.metrics.clone(), every)
                .await;
        }));
        if let Some(discovery) = discovery {
            let routing = state.proxy.upstream.routing.clone();
            tasks.push(tokio::spawn(async move {
                discovery.run(routing, Duration::from_secs(1)).await
            }));
        }
        if let Some(tls) = state.proxy.tls.clone() {
            tasks.push(tokio::spawn(async move {
                tls.watch(Duration::from_secs(1)).await
            }));
        }
        tasks.push(tokio::spawn(crate::control::admin::watchdog(Arc::clone(
            state,
        ))));
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
