//! `platformctl catalog list|set`: the prices orders are charged at, read
//! and changed in the orders database itself (the service reads them for
//! every order, so a change reaches the next order of every color).

use std::path::PathBuf;

use anyhow::Context;
use orders::catalog::{self, Price};
use platform_runtime::config::DatabaseConfig;
use sqlx::{AnyConnection, Connection, Executor};

#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    command: CatalogCommand,
    /// The orders database: postgres://... or sqlite:PATH [default: the one
    /// `platformctl up` keeps in --data-dir]
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// The data directory of `platformctl up`
    #[arg(long, global = true, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
enum CatalogCommand {
    /// Every SKU's price, by SKU and currency.
    List {
        /// Only the prices in this ISO 4217 currency
        #[arg(long)]
        currency: Option<String>,
    },
    /// Add a price or change one; orders placed from now on are charged it.
    Set {
        sku: String,
        /// ISO 4217 code, for example EUR
        #[arg(long)]
        currency: String,
        /// Price of one unit in minor units (cents), 1 to 1000000
        #[arg(long)]
        price: i64,
        /// What the SKU is called [default: its current name]
        #[arg(long)]
        name: Option<String>,
    },
}

async fn connect(args: &CatalogArgs) -> anyhow::Result<(AnyConnection, String)> {
    sqlx::any::install_default_drivers();
    let database =
        crate::databases::of_service(args.database_url.as_deref(), &args.data_dir, "orders")
            .map_err(anyhow::Error::msg)?;
    let url = database.existing_url();
    let mut conn = AnyConnection::connect(&url)
        .await
        .with_context(|| format!("cannot open the orders database {url}"))?;
    if let DatabaseConfig::Sqlite(_) = database {
        // The services write too: wait for them rather than fail.
        conn.execute("PRAGMA busy_timeout = 10000").await?;
    }
    let has_catalog = sqlx::query("SELECT 1 FROM catalog LIMIT 1")
        .fetch_optional(&mut conn)
        .await
        .is_ok();
    anyhow::ensure!(
        has_catalog,
        "the orders database {url} has no catalog: it runs a release before 0.2.0 \
         (orders migration 3, catalog); start release 0.2.0 or later on it first"
    );
    Ok((conn, url))
}

pub async fn run(args: CatalogArgs) -> anyhow::Result<()> {
    let (mut conn, url) = connect(&args).await?;
    match args.command {
        CatalogCommand::List { currency } => {
            let currency = currency.map(|c| c.trim().to_ascii_uppercase());
            let pool_rows = list(&mut conn, currency.as_deref()).await?;
            println!("{:<16} {:<8} {:>12}  NAME", "SKU", "CURRENCY", "PRICE");
            for p in pool_rows {
                println!(
                    "{:<16} {:<8} {:>12}  {}",
                    p.sku, p.currency, p.unit_price_minor, p.name
                );
            }
        }
        CatalogCommand::Set {
            sku,
            currency,
            price,
            name,
        } => {
            let sku = sku.trim().to_owned();
            let currency = currency.trim().to_ascii_uppercase();
            let existing = list(&mut conn, None).await?;
            let name = match name {
                Some(name) => name.trim().to_owned(),
                None => existing
                    .iter()
                    .find(|p| p.sku == sku)
                    .map(|p| p.name.clone())
                    .with_context(|| format!("{sku} is a new SKU: give it a --name"))?,
            };
            let price = Price {
                sku,
                currency,
                name,
                unit_price_minor: price,
                updated_at_ms: platform_runtime::time::now_ms(),
            };
            if let Some(problem) = price.problem() {
                anyhow::bail!("{problem}");
            }
            let before = existing
                .iter()
                .find(|p| p.sku == price.sku && p.currency == price.currency)
                .map(|p| p.unit_price_minor);
            catalog::set(&mut conn, &price)
                .await
                .with_context(|| format!("cannot write the price to {url}"))?;
            match before {
                Some(old) => println!(
                    "{} {}: {old} -> {} (orders placed from now on)",
                    price.sku, price.currency, price.unit_price_minor
                ),
                None => println!(
                    "{} {}: {} (new)",
                    price.sku, price.currency, price.unit_price_minor
                ),
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

async fn list(conn: &mut AnyConnection, currency: Option<&str>) -> anyhow::Result<Vec<Price>> {
    catalog::list(conn, currency)
        .await
        .context("cannot read the catalog")
}
