//! `platformctl migrate <service> [--contract]`: what migrations a
//! service's database lacks, and, with `--contract`, the contract steps its
//! services do not apply at start (they remove what an older release
//! reads). Those are applied only when every endpoint of the service, both
//! colors and every replica, runs a release that knows them, as the
//! gateway's probes report; otherwise nothing is applied and the line says
//! which endpoint runs what.

use clap::Args;
use platform_routing::view::Status;
use platform_runtime::Color;
use platform_runtime::storage::{Db, Migration, Steps};
use sqlx::Connection;

use super::Target;
use super::exit::{CtlError, REFUSED, UNREACHABLE};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    target: Target,
    /// auth, orders, payments or notifications
    service: String,
    /// Apply the contract steps (after checking what every endpoint runs);
    /// without it, only say what the database lacks.
    #[arg(long)]
    contract: bool,
    /// The service's database: postgres://... or sqlite:PATH [default: the
    /// one `platformctl up` keeps in --data-dir]
    #[arg(long)]
    database_url: Option<String>,
}

fn migrations(service: &str) -> Result<&'static [Migration], CtlError> {
    Ok(match service {
        "auth" => auth::MIGRATIONS,
        "orders" => orders::MIGRATIONS,
        "payments" => payments::MIGRATIONS,
        "notifications" => notifications::MIGRATIONS,
        other => {
            return Err(CtlError::new(
                REFUSED,
                format!(
                    "unknown service {other:?}; expected auth, orders, payments or notifications"
                ),
            ));
        }
    })
}

/// The versions of the migrations the database has.
async fn applied(url: &str) -> Result<Vec<i64>, CtlError> {
    sqlx::any::install_default_drivers();
    let unreachable = |e: sqlx::Error| {
        CtlError::new(
            UNREACHABLE,
            format!("cannot read the migrations of {url}: {e}"),
        )
    };
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .map_err(unreachable)?;
    let versions = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .map_err(unreachable)?;
    let _ = conn.close().await;
    Ok(versions)
}

/// Every endpoint of `service` that does not run a release knowing
/// migration `version`, as a line each.
fn behind(status: &Status, service: &str, version: i64) -> Vec<String> {
    let Some(entry) = status.services.get(service) else {
        return vec![format!("the gateway routes no service {service:?}")];
    };
    let mut found = Vec::new();
    for color in [Color::Blue, Color::Green] {
        for probe in &entry.colors.of(color).endpoints {
            let release = probe.version.as_deref().unwrap_or("an unknown release");
            match probe.schema {
                Some(known) if known >= version => {}
                Some(known) => found.push(format!(
                    "{color} {} runs {release}, which knows migrations up to {known}",
                    probe.endpoint
                )),
                None if probe.error.is_some() && probe.version.is_none() => found.push(format!(
                    "{color} {} does not answer, so what it runs is unknown",
                    probe.endpoint
                )),
                None => found.push(format!(
                    "{color} {} runs {release}, which does not say which migrations it knows",
                    probe.endpoint
                )),
            }
        }
    }
    found
}

pub async fn migrate(args: MigrateArgs) -> Result<(), CtlError> {
    let steps = migrations(&args.service)?;
    let config = crate::databases::of_service(
        args.database_url.as_deref(),
        &args.target.data_dir,
        &args.service,
    )
    .map_err(|e| CtlError::new(REFUSED, e))?;
    let have = applied(&config.existing_url()).await?;
    let missing: Vec<&Migration> = steps
        .iter()
        .filter(|m| !have.contains(&m.version))
        .collect();
    let contract: Vec<&&Migration> = missing.iter().filter(|m| m.contract).collect();
    if missing.is_empty() {
        println!(
            "{}: every migration of this release is applied (up to {})",
            args.service,
            have.last().copied().unwrap_or(0)
        );
        return Ok(());
    }
    for m in &missing {
        println!(
            "{}: migration {} ({}) not applied: {}",
            args.service,
            m.version,
            m.name,
            if m.contract {
                "contract step, applied by `platformctl migrate --contract`"
            } else {
                "expand step, applied by the service at start"
            }
        );
    }
    if !args.contract || contract.is_empty() {
        return Ok(());
    }
    let newest = contract.iter().map(|m| m.version).max().unwrap_or(0);
    let status: Status = args.target.admin()?.get_as("/admin/status").await?;
    let lagging = behind(&status, &args.service, newest);
    if !lagging.is_empty() {
        return Err(CtlError::new(
            REFUSED,
            format!(
                "not applied: migration {newest} removes what older releases read, and {}; \
                 move every endpoint of {} to this release (or stop it) first",
                lagging.join("; "),
                args.service
            ),
        ));
    }
    let db = Db::open_with(&config, steps, Steps::All)
        .await
        .map_err(|e| CtlError::new(UNREACHABLE, format!("{e}")))?;
    println!(
        "{}: applied up to migration {} (contract steps included)",
        args.service,
        db.schema().database
    );
    Ok(())
}
