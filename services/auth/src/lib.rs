//! The auth service: accounts with argon2id password hashes, EdDSA-signed
//! access tokens, the public key set other services verify them with, and
//! client credentials for service-to-service calls.
#![forbid(unsafe_code)]

mod clients;
mod keys;
mod password;
mod service;
mod store;

use std::time::Duration;

use platform_proto::auth::v1::{DESCRIPTOR_SET, auth_service_server::AuthServiceServer};
use platform_runtime::storage::{Db, Migration};
use platform_runtime::{ConfigError, Env, Host, RunningService, ServiceConfig, StartError};

pub use clients::{ServiceClient, ServiceClients};
pub use service::Auth;

/// The blue port; green runs on 50151.
pub const PORT: u16 = 50051;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "users",
    sqlite: include_str!("../migrations/0001_users.sql"),
    postgres: include_str!("../migrations/0001_users.sql"),
}];

/// Settings only auth reads.
#[derive(Debug)]
pub struct AuthSettings {
    pub user_token_ttl: Duration,
    pub service_token_ttl: Duration,
    pub clients: ServiceClients,
}

impl AuthSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            user_token_ttl: env.millis(
                "AUTH_TOKEN_TTL_MS",
                Duration::from_secs(900),
                Duration::from_secs(86_400),
            )?,
            service_token_ttl: env.millis(
                "AUTH_SERVICE_TOKEN_TTL_MS",
                Duration::from_secs(600),
                Duration::from_secs(86_400),
            )?,
            clients: ServiceClients::from_env(env)?,
        })
    }
}

/// Loads the keys, opens the database, binds the listeners and starts serving.
pub async fn start(config: ServiceConfig, env: Env) -> Result<RunningService, StartError> {
    let settings = AuthSettings::from_env(&env)?;
    let keys = keys::load(&env, &config.data_dir)?;
    let db = Db::open(&config.database, MIGRATIONS).await?;
    let auth = Auth::new(db, keys, &config.tokens, settings);
    let host = Host::bind(config).await?;
    Ok(host
        .serve(AuthServiceServer::new(auth), DESCRIPTOR_SET)
        .await?)
}
