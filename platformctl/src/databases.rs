//! `platformctl up --postgres`: one database per service on a PostgreSQL
//! server, created when missing (blue, green and every replica of a service
//! share it, as in a cluster).

use std::collections::HashMap;

use anyhow::Context;
use platform_runtime::config::DatabaseConfig;
use sqlx::Connection;

/// The server part of `--postgres`, or what to fix in it.
pub fn check(url: &str) -> anyhow::Result<&str> {
    let server = url.trim_end_matches('/');
    if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
        anyhow::bail!("--postgres expects postgres://user:password@host:port, got {server:?}");
    }
    if server
        .split("://")
        .nth(1)
        .is_some_and(|rest| rest.contains('/'))
    {
        anyhow::bail!(
            "--postgres names the server, not a database: drop the /<database> from {server:?} \
             (each service gets platform_<service>)"
        );
    }
    Ok(server)
}

/// Creates `platform_<service>` for every service on the server at `url`
/// when missing; returns each service's DATABASE_URL.
pub async fn prepare(url: &str, services: &[&str]) -> anyhow::Result<HashMap<String, String>> {
    let server = check(url)?;
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {server}"))?;
    let mut urls = HashMap::new();
    for service in services {
        let name = format!("platform_{service}");
        let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&mut admin)
            .await
            .context("cannot list the databases")?;
        if exists.is_none() {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .with_context(|| format!("cannot create the database {name}"))?;
        }
        urls.insert((*service).to_owned(), format!("{server}/{name}"));
    }
    Ok(urls)
}

/// The database of `service` that a platformctl command works on: the one
/// `--database-url` names, or the SQLite file `platformctl up` keeps for it
/// in `data_dir` (which must exist); or what to fix.
pub fn of_service(
    database_url: Option<&str>,
    data_dir: &std::path::Path,
    service: &str,
) -> Result<DatabaseConfig, String> {
    if let Some(url) = database_url {
        return DatabaseConfig::from_url(url).map_err(|_| {
            format!("--database-url {url:?}: expected postgres://user:password@host/db or sqlite:path/to/file.db")
        });
    }
    let local = DatabaseConfig::in_dir(&data_dir.join(service), service);
    match &local {
        DatabaseConfig::Sqlite(path) if !path.is_file() => Err(format!(
            "no {service} database at {}: start the platform with `platformctl up` \
             (or pass --data-dir or --database-url)",
            path.display()
        )),
        _ => Ok(local),
    }
}
