//! The notification service: stores messages to users once per idempotency
//! key, lists them, and streams new ones live to every replica and color.
#![forbid(unsafe_code)]

mod service;
mod store;
mod stream;

use std::time::Duration;

use platform_proto::notifications::v1::{
    DESCRIPTOR_SET, notification_service_server::NotificationServiceServer,
};
use platform_runtime::caller::Authenticator;
use platform_runtime::storage::{Db, Migration};
use platform_runtime::tokens::Verifier;
use platform_runtime::{Env, Host, RunningService, ServiceConfig, StartError};

pub use service::Notifications;

/// The blue port; green runs on 50154.
pub const PORT: u16 = 50054;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "notifications",
    sqlite: include_str!("../migrations/0001_notifications.sql"),
    postgres: include_str!("../migrations/0001_notifications.sql"),
}];

/// Opens the database, binds the listeners and starts serving.
pub async fn start(config: ServiceConfig, env: Env) -> Result<RunningService, StartError> {
    let poll = env.millis(
        "STREAM_POLL_MS",
        Duration::from_millis(500),
        Duration::from_secs(60),
    )?;
    let db = Db::open(&config.database, MIGRATIONS).await?;
    let auth = Authenticator::new(Verifier::remote(&config.tokens)?, &config.tokens);
    let host = Host::bind(config).await?;
    let service = Notifications::new(db, auth, host.streams_end(), poll);
    Ok(host
        .serve(NotificationServiceServer::new(service), DESCRIPTOR_SET)
        .await?)
}
