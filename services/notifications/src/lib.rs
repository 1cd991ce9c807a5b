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
use platform_runtime::{ConfigError, Env, Host, RunningService, ServiceConfig, StartError};

use crate::stream::{LiveStreams, StreamConfig};

pub use service::Notifications;

/// The blue port; green runs on 50154.
pub const PORT: u16 = 50054;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "notifications",
        sqlite: include_str!("../migrations/0001_notifications.sql"),
        postgres: include_str!("../migrations/0001_notifications.sql"),
        contract: false,
    },
    Migration {
        version: 2,
        name: "notifications_by_time",
        sqlite: include_str!("../migrations/0002_notifications_by_time.sql"),
        postgres: include_str!("../migrations/0002_notifications_by_time.sql"),
        contract: false,
    },
];

/// The live-stream settings: `STREAM_POLL_MS` (default 500),
/// `MAX_STREAMS_PER_USER` (default 5) and `MAX_STREAMS` (default 1000).
fn stream_config(env: &Env) -> Result<StreamConfig, ConfigError> {
    Ok(StreamConfig {
        poll: env.millis(
            "STREAM_POLL_MS",
            Duration::from_millis(500),
            Duration::from_secs(60),
        )?,
        max_per_user: count(env, "MAX_STREAMS_PER_USER", 5, 1_000)?,
        max_total: count(env, "MAX_STREAMS", 1_000, 1_000_000)?,
    })
}

/// A whole number from 1 to `max`, `default` when unset.
fn count(env: &Env, var: &str, default: usize, max: usize) -> Result<usize, ConfigError> {
    let allowed = format!("a whole number from 1 to {max}");
    match env.parse::<usize>(var, &allowed)? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ConfigError::new(
            var,
            format!("expected {allowed}, got {n}"),
        )),
    }
}

/// Opens the database, binds the listeners, starts the stream poller and serves.
pub async fn start(config: ServiceConfig, env: Env) -> Result<RunningService, StartError> {
    let streams = stream_config(&env)?;
    let db = Db::open(&config.database, MIGRATIONS).await?;
    let auth = Authenticator::new(Verifier::remote(&config.tokens)?, &config.tokens);
    let host = Host::bind(config).await?.runs_on(db.schema());
    let store = store::Store::new(db);
    let live = LiveStreams::new(store.clone(), streams);
    tokio::spawn(live.clone().run_poller(host.streams_end()));
    let service = Notifications::new(store, auth, live);
    Ok(host
        .serve(NotificationServiceServer::new(service), DESCRIPTOR_SET)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_settings_have_defaults_and_bounds() {
        let config = |pairs: &[(&str, &str)]| {
            stream_config(&Env::from_pairs(pairs.iter().copied())).map_err(|e| e.to_string())
        };
        assert_eq!(
            config(&[]),
            Ok(StreamConfig {
                poll: Duration::from_millis(500),
                max_per_user: 5,
                max_total: 1000,
            })
        );
        assert_eq!(
            config(&[("MAX_STREAMS_PER_USER", "2"), ("MAX_STREAMS", "10")])
                .map(|c| (c.max_per_user, c.max_total)),
            Ok((2, 10))
        );
        assert_eq!(
            config(&[("MAX_STREAMS_PER_USER", "0")]),
            Err(
                "invalid MAX_STREAMS_PER_USER: expected a whole number from 1 to 1000, got 0"
                    .into()
            )
        );
        assert_eq!(
            config(&[("MAX_STREAMS", "many")]),
            Err(
                r#"invalid MAX_STREAMS: expected a whole number from 1 to 1000000, got "many""#
                    .into()
            )
        );
    }
}
