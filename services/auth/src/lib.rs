//! The auth service: accounts with argon2id password hashes, EdDSA-signed
//! access tokens, the public key set other services verify them with, and
//! client credentials for service-to-service calls.
#![forbid(unsafe_code)]

mod clients;
mod common;
mod keys;
mod password;
mod pool;
mod service;
mod store;
mod throttle;

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use platform_proto::auth::v1::{DESCRIPTOR_SET, auth_service_server::AuthServiceServer};
use platform_runtime::storage::{Db, Migration};
use platform_runtime::{ConfigError, Env, Host, RunningService, ServiceConfig, StartError};

pub use clients::{ServiceClient, ServiceClients};
pub use pool::PoolConfig;
pub use service::Auth;
pub use throttle::ThrottleConfig;

/// The blue port; green runs on 50151.
pub const PORT: u16 = 50051;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "users",
    sqlite: include_str!("../migrations/0001_users.sql"),
    postgres: include_str!("../migrations/0001_users.sql"),
    contract: false,
}];

/// Settings only auth reads.
#[derive(Debug)]
pub struct AuthSettings {
    pub user_token_ttl: Duration,
    pub service_token_ttl: Duration,
    pub clients: ServiceClients,
    /// Password hashes at once, waiting, and how long: about 19 MiB each.
    pub hashing: PoolConfig,
    /// Failed logins (and registers of a taken email) per account.
    pub throttle: ThrottleConfig,
}

/// A whole number of `var` within `range`, `default` when unset.
fn count<T>(env: &Env, var: &str, default: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display,
{
    let allowed = format!("a whole number from {} to {}", range.start(), range.end());
    match env.parse::<T>(var, &allowed)? {
        None => Ok(default),
        Some(n) if range.contains(&n) => Ok(n),
        Some(n) => Err(ConfigError::new(
            var,
            format!("expected {allowed}, got {n}"),
        )),
    }
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
            hashing: PoolConfig {
                // 4 x 19 MiB of argon2 memory, plus the process, fits the chart's limit.
                workers: count(env, "AUTH_PASSWORD_HASH_CONCURRENCY", 4, 1..=64)?,
                queue: count(env, "AUTH_PASSWORD_HASH_QUEUE", 64, 0..=100_000)?,
                wait: env.millis(
                    "AUTH_PASSWORD_HASH_WAIT_MS",
                    Duration::from_secs(5),
                    Duration::from_secs(60),
                )?,
            },
            throttle: ThrottleConfig {
                max_failures: count(env, "AUTH_LOGIN_MAX_FAILURES", 5, 1..=1000)?,
                window: env.millis(
                    "AUTH_LOGIN_FAILURE_WINDOW_MS",
                    Duration::from_secs(900),
                    Duration::from_secs(86_400),
                )?,
                lockout: env.millis(
                    "AUTH_LOGIN_LOCKOUT_MS",
                    Duration::from_secs(30),
                    Duration::from_secs(86_400),
                )?,
                max_lockout: env.millis(
                    "AUTH_LOGIN_MAX_LOCKOUT_MS",
                    Duration::from_secs(900),
                    Duration::from_secs(86_400),
                )?,
                max_accounts: count(env, "AUTH_LOGIN_THROTTLE_ACCOUNTS", 100_000, 1..=10_000_000)?,
            },
        })
    }
}

/// Loads the keys, opens the database, binds the listeners and starts serving.
pub async fn start(config: ServiceConfig, env: Env) -> Result<RunningService, StartError> {
    let settings = AuthSettings::from_env(&env)?;
    let keys = keys::load(&env, &config.data_dir)?;
    let db = Db::open(&config.database, MIGRATIONS).await?;
    let passwords = password::Passwords::new(settings.hashing).map_err(|e| {
        ConfigError::new(
            "AUTH_PASSWORD_HASH_CONCURRENCY",
            format!("cannot start {} threads: {e}", settings.hashing.workers),
        )
    })?;
    let host = Host::bind(config).await?.runs_on(db.schema());
    let auth = Auth::new(db, keys, &host.config().tokens, settings, passwords);
    auth.register_metrics(host.metrics());
    Ok(host
        .serve(AuthServiceServer::new(auth), DESCRIPTOR_SET)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_have_defaults_and_bad_values_name_the_variable() {
        let settings = AuthSettings::from_env(&Env::default()).expect("defaults");
        assert_eq!(
            settings.hashing,
            PoolConfig {
                workers: 4,
                queue: 64,
                wait: Duration::from_secs(5),
            }
        );
        assert_eq!(
            settings.throttle,
            ThrottleConfig {
                max_failures: 5,
                window: Duration::from_secs(900),
                lockout: Duration::from_secs(30),
                max_lockout: Duration::from_secs(900),
                max_accounts: 100_000,
            }
        );
        for (var, value, want) in [
            (
                "AUTH_PASSWORD_HASH_CONCURRENCY",
                "0",
                "invalid AUTH_PASSWORD_HASH_CONCURRENCY: expected a whole number from 1 to 64, got 0",
            ),
            (
                "AUTH_PASSWORD_HASH_QUEUE",
                "lots",
                "invalid AUTH_PASSWORD_HASH_QUEUE: expected a whole number from 0 to 100000, got \"lots\"",
            ),
            (
                "AUTH_LOGIN_MAX_FAILURES",
                "-1",
                "invalid AUTH_LOGIN_MAX_FAILURES: expected a whole number from 1 to 1000, got \"-1\"",
            ),
            (
                "AUTH_PASSWORD_HASH_WAIT_MS",
                "90000",
                "invalid AUTH_PASSWORD_HASH_WAIT_MS: expected whole milliseconds from 0 to 60000, got 90000",
            ),
        ] {
            let err = AuthSettings::from_env(&Env::from_pairs([(var, value)])).expect_err(var);
            assert_eq!(err.to_string(), want);
        }
    }
}
