//! The order service: validates and stores orders, charges them through
//! payments, and tells the user through notifications. An acknowledged
//! order is durable before anything else happens; a sweeper finishes orders
//! and notifications that a crash or an outage left half way.
#![forbid(unsafe_code)]

pub mod catalog;
mod downstream;
mod flow;
mod service;
mod store;

use std::time::Duration;

use platform_proto::orders::v1::{DESCRIPTOR_SET, order_service_server::OrderServiceServer};
use platform_runtime::caller::Authenticator;
use platform_runtime::storage::{Db, Migration};
use platform_runtime::tokens::{ServiceCredentials, Verifier};
use platform_runtime::{ConfigError, Env, Host, RunningService, ServiceConfig, StartError};

pub use service::Orders;

/// The blue port; green runs on 50152.
pub const PORT: u16 = 50052;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "orders",
        sqlite: include_str!("../migrations/0001_orders.sql"),
        postgres: include_str!("../migrations/0001_orders.sql"),
        contract: false,
    },
    Migration {
        version: 2,
        name: "order_fingerprint",
        sqlite: include_str!("../migrations/0002_order_fingerprint.sql"),
        postgres: include_str!("../migrations/0002_order_fingerprint.sql"),
        contract: false,
    },
    Migration {
        version: 3,
        name: "catalog",
        sqlite: include_str!("../migrations/0003_catalog.sql"),
        postgres: include_str!("../migrations/0003_catalog.sql"),
        contract: false,
    },
    Migration {
        version: 4,
        name: "drop_payment_method",
        sqlite: include_str!("../migrations/0004_drop_payment_method.sql"),
        postgres: include_str!("../migrations/0004_drop_payment_method.sql"),
        contract: true,
    },
];

/// Opens the database, binds the listeners, starts the sweeper and serves.
pub async fn start(config: ServiceConfig, env: Env) -> Result<RunningService, StartError> {
    let secret = env.string("SERVICE_CLIENT_SECRET").ok_or_else(|| {
        ConfigError::new(
            "SERVICE_CLIENT_SECRET",
            "required: the secret orders uses to get its service token from auth (see AUTH_SERVICE_CLIENTS)",
        )
    })?;
    let client_id = env.string_or("SERVICE_CLIENT_ID", "orders");
    let credentials = ServiceCredentials::new(&config.tokens, client_id, secret)?;
    let downstream = downstream::Downstream::from_env(&env, credentials)?;
    let sweep_every = env.millis(
        "SWEEP_INTERVAL_MS",
        Duration::from_secs(2),
        Duration::from_secs(3600),
    )?;
    let stale_after = env.millis(
        "PENDING_RETRY_AFTER_MS",
        Duration::from_secs(10),
        Duration::from_secs(86_400),
    )?;
    let db = Db::open(&config.database, MIGRATIONS).await?;
    let auth = Authenticator::new(Verifier::remote(&config.tokens)?, &config.tokens);
    let host = Host::bind(config).await?.runs_on(db.schema());
    let flow = flow::Flow {
        store: store::Store::new(db),
        downstream,
    };
    tokio::spawn(
        flow.clone()
            .run_sweeper(sweep_every, stale_after, host.streams_end()),
    );
    Ok(host
        .serve(
            OrderServiceServer::new(Orders::new(flow, auth)),
            DESCRIPTOR_SET,
        )
        .await?)
}
