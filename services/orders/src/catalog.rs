//! The catalog that prices orders (release 0.2.0 on): a price per SKU and
//! currency, seeded by migration 3 and changed with `platformctl catalog set`.
//! A price is read when an order is placed and copied into its items, so a
//! later change never alters an order already placed.

use std::collections::HashMap;

use sqlx::{AnyConnection, AnyPool, Row};

/// The highest price of one unit, as the order rules bound it: with at most
/// 100 items of at most 10000 units, a total always fits.
pub const MAX_PRICE_MINOR: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub sku: String,
    pub currency: String,
    pub name: String,
    pub unit_price_minor: i64,
    pub updated_at_ms: i64,
}

impl Price {
    /// What is wrong with this price, if anything, as a line for its setter.
    pub fn problem(&self) -> Option<String> {
        if self.sku.trim().is_empty() || self.sku.len() > 64 {
            return Some(format!(
                "the SKU must have 1 to 64 characters, got {:?}",
                self.sku
            ));
        }
        if !platform_proto::rules::ISO_4217.contains(&self.currency.as_str()) {
            return Some(format!(
                "the currency {:?} is not an ISO 4217 code (for example EUR)",
                self.currency
            ));
        }
        if !(1..=MAX_PRICE_MINOR).contains(&self.unit_price_minor) {
            return Some(format!(
                "the price must be from 1 to {MAX_PRICE_MINOR} minor units, got {}",
                self.unit_price_minor
            ));
        }
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Some("the name must have 1 to 200 characters".to_owned());
        }
        None
    }
}

/// Every price, by SKU then currency; only `currency`'s when given.
pub async fn list<'c, E>(db: E, currency: Option<&str>) -> Result<Vec<Price>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT sku, currency, name, unit_price_minor, updated_at_ms FROM catalog \
         WHERE ($1 = '' OR currency = $1) ORDER BY sku, currency",
    )
    .bind(currency.unwrap_or(""))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Price {
                sku: r.try_get(0)?,
                currency: r.try_get(1)?,
                name: r.try_get(2)?,
                unit_price_minor: r.try_get(3)?,
                updated_at_ms: r.try_get(4)?,
            })
        })
        .collect()
}

/// The unit price of each of `skus` in `currency`; a SKU without one is
/// missing from the map.
pub async fn prices(
    pool: &AnyPool,
    currency: &str,
    skus: &[&str],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let placeholders = (2..skus.len() + 2)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT sku, unit_price_minor FROM catalog WHERE currency = $1 AND sku IN ({placeholders})"
    );
    let mut query = sqlx::query(&sql).bind(currency.to_owned());
    for sku in skus {
        query = query.bind((*sku).to_owned());
    }
    query
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Adds a price or changes it; orders placed from now on use it.
pub async fn set(conn: &mut AnyConnection, price: &Price) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO catalog (sku, currency, name, unit_price_minor, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sku, currency) DO UPDATE SET \
         name = excluded.name, unit_price_minor = excluded.unit_price_minor, \
         updated_at_ms = excluded.updated_at_ms",
    )
    .bind(&price.sku)
    .bind(&price.currency)
    .bind(&price.name)
    .bind(price.unit_price_minor)
    .bind(price.updated_at_ms)
    .execute(conn)
    .await
    .map(|_| ())
}
