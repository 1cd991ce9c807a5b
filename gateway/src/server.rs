//! The gateway assembled: the data plane's three listeners (public,
//! internal, admin), the control plane beside them, and the order of a
//! graceful stop (readiness fails, the drain delay passes, accepting stops,
//! the control plane stops, connections finish within the shutdown
//! timeout). The only module that knows both planes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use crate::control::ControlPlane;
use crate::control::admin::AdminApi;
use crate::control::kube::EndpointDiscovery;
use crate::control::source::RoutingSource;
use crate::proxy::conn::Listener;
use crate::proxy::listen::{Edge, Listeners, accept, bind};
use crate::proxy::state::State;

/// The listeners of a running gateway.
#[derive(Debug)]
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    /// Drains (readiness fails, requests still served for the drain delay),
    /// stops accepting, lets requests finish, and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds the three listeners, starts the control plane, and serves until
/// stopped.
pub(crate) async fn serve(
    state: State,
    source: RoutingSource,
    discovery: Option<EndpointDiscovery>,
) -> std::io::Result<RunningGateway> {
    let reuse_port = state.config.reuse_port;
    let public = bind(state.config.listen, reuse_port)?;
    let admin = bind(state.config.admin_listen, reuse_port)?;
    let internal = bind(state.config.internal_listen, reuse_port)?;
    let (addr, admin_addr, internal_addr) = (
        public.local_addr()?,
        admin.local_addr()?,
        internal.local_addr()?,
    );
    let state = Arc::new(state);
    let admin_api = AdminApi::new(Arc::clone(&state), source);
    let (stop, stop_rx) = watch::channel(false);
    let control = ControlPlane::start(&admin_api, discovery);
    let task = tokio::spawn(async move {
        let (accepting_tx, accepting) = watch::channel(true);
        let (closing_tx, closing) = watch::channel(false);
        let (tickets, mut all_closed) = crate::proxy::conn::Tickets::new();
        let config = &state.config;
        let limits = || {
            crate::proxy::conn::ConnLimits::new(
                config.max_connections_per_client,
                config.max_connections,
            )
        };
        let listeners = |tls| Listeners {
            tls,
            limits: limits(),
            accepting: accepting.clone(),
            closing: closing.clone(),
            tickets: tickets.clone(),
        };
        let edge = |listener| Edge {
            state: Arc::clone(&state),
            listener,
        };
        let loops = [
            tokio::spawn(accept(
                Arc::clone(&state),
                public,
                edge(Listener::Public),
                listeners(true),
            )),
            tokio::spawn(accept(
                Arc::clone(&state),
                internal,
                edge(Listener::Internal),
                listeners(false),
            )),
            tokio::spawn(accept(
                Arc::clone(&state),
                admin,
                admin_api,
                listeners(false),
            )),
        ];
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|s| *s).await;
        state.draining.store(true, Ordering::Relaxed);
        state.local.draining().await;
        tracing::info!(
            drain_delay_ms = state.config.drain_delay.as_millis() as u64,
            "draining: readiness fails"
        );
        tokio::time::sleep(state.config.drain_delay).await;
        let _ = accepting_tx.send(false);
        for l in loops {
            let _ = l.await;
        }
        control.stop();
        // Every connection is asked to close and given the shutdown timeout
        // to finish the requests it has.
        let _ = closing_tx.send(true);
        tickets.close();
        let bound = state.config.shutdown_timeout;
        if tokio::time::timeout(bound, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                shutdown_timeout_ms = bound.as_millis() as u64,
                "requests still running at the shutdown timeout; stopping anyway"
            );
        }
    });
    Ok(RunningGateway {
        addr,
        admin_addr,
        internal_addr,
        stop,
        task,
    })
}
