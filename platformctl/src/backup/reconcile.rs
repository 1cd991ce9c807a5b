//! After a restore: orders and payments were restored from copies that
//! need not be of the same instant, so they are read side by side and every
//! order is matched with its charges. What the platform repairs by itself
//! (pending orders, the sweeper charges again with the order's id as the
//! idempotency key, so a charge that exists is found, never made twice;
//! unsent notifications, the outbox sends them) is counted; what it cannot
//! is listed with what an operator should do.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use futures_util::TryStreamExt;
use platform_runtime::config::DatabaseConfig;
use sqlx::{AnyConnection, Connection, Row};

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub orders: u64,
    pub charges: u64,
    /// Pending: the orders sweeper finishes them (already charged ones among them).
    pub pending: u64,
    pub pending_already_charged: u64,
    /// Notifications not sent yet: the outbox sends them.
    pub unsent_notifications: u64,
    /// The newest write each database holds (ms since the epoch).
    pub newest_order_ms: Option<i64>,
    pub newest_charge_ms: Option<i64>,
    /// Needs an operator, by kind: order (or payment) ids.
    pub manual: BTreeMap<&'static str, Vec<String>>,
}

/// What each kind of manual case means and what to do about it.
pub const ACTIONS: [(&str, &str); 5] = [
    (
        "paid_without_charge",
        "paid orders whose charge is not in payments (payments was restored to an earlier point): check the payment processor; if it was charged, the order is right; if not, cancel the order",
    ),
    (
        "charge_without_order",
        "approved charges (payment ids) whose order is not in orders (orders was restored to an earlier point): refund them (POST /v1/payments/{id}:refund)",
    ),
    (
        "failed_but_charged",
        "orders marked payment_failed that have an approved charge: refund the charge or mark the order paid",
    ),
    (
        "charged_twice",
        "orders with more than one approved charge: refund all but one",
    ),
    (
        "amount_differs",
        "paid orders whose charge is for another amount: refund the charge and charge the order's total",
    ),
];

fn order_by_id(config: &DatabaseConfig, column: &str) -> String {
    match config {
        DatabaseConfig::Postgres(_) => format!("{column} COLLATE \"C\""),
        DatabaseConfig::Sqlite(_) => column.to_owned(),
    }
}

async fn connect(config: &DatabaseConfig) -> anyhow::Result<AnyConnection> {
    sqlx::any::install_default_drivers();
    let url = config.existing_url();
    AnyConnection::connect(&url)
        .await
        .with_context(|| format!("cannot open {url} for the consistency report"))
}

struct Charge {
    payment: String,
    order: String,
    amount: i64,
    refunded: i64,
}

/// Reads both databases, one pass each in order-id order.
pub async fn check(orders: &DatabaseConfig, payments: &DatabaseConfig) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut pay = connect(payments).await?;
    let mut charges: Vec<Charge> = Vec::new();
    {
        let sql = format!(
            "SELECT id, order_id, amount_minor, refunded_minor, created_at_ms FROM payments \
             WHERE status = 'approved' ORDER BY {}",
            order_by_id(payments, "order_id")
        );
        let mut rows = sqlx::query(&sql).fetch(&mut pay);
        while let Some(row) = rows.try_next().await? {
            let created: i64 = row.try_get(4)?;
            report.newest_charge_ms = report.newest_charge_ms.max(Some(created));
            charges.push(Charge {
                payment: row.try_get(0)?,
                order: row.try_get(1)?,
                amount: row.try_get(2)?,
                refunded: row.try_get(3)?,
            });
        }
    }
    report.charges = charges.len() as u64;
    let mut ord = connect(orders).await?;
    let unsent: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE sent_at_ms IS NULL")
        .fetch_one(&mut ord)
        .await?;
    report.unsent_notifications = u64::try_from(unsent.0).unwrap_or(0);
    let sql = format!(
        "SELECT id, status, total_minor, updated_at_ms FROM orders ORDER BY {}",
        order_by_id(orders, "id")
    );
    let mut next = 0usize;
    let mut manual: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut rows = sqlx::query(&sql).fetch(&mut ord);
    while let Some(row) = rows.try_next().await? {
        let id: String = row.try_get(0)?;
        let status: String = row.try_get(1)?;
        let total: i64 = row.try_get(2)?;
        let updated: i64 = row.try_get(3)?;
        report.orders += 1;
        report.newest_order_ms = report.newest_order_ms.max(Some(updated));
        // Charges of orders that sort before this one have no order.
        while next < charges.len() && charges[next].order.as_str() < id.as_str() {
            manual
                .entry("charge_without_order")
                .or_default()
                .push(charges[next].payment.clone());
            next += 1;
        }
        let first = next;
        while next < charges.len() && charges[next].order == id {
            next += 1;
        }
        let mine = &charges[first..next];
        let live: Vec<&Charge> = mine.iter().filter(|c| c.refunded < c.amount).collect();
        let kind = match status.as_str() {
            "pending" => {
                report.pending += 1;
                report.pending_already_charged += u64::from(!mine.is_empty());
                (mine.len() > 1).then_some("charged_twice")
            }
            "paid" if mine.is_empty() => Some("paid_without_charge"),
            "paid" if mine.len() > 1 => Some("charged_twice"),
            "paid" if mine[0].amount != total => Some("amount_differs"),
            "payment_failed" if !live.is_empty() => Some("failed_but_charged"),
            _ if live.len() > 1 => Some("charged_twice"),
            _ => None,
        };
        if let Some(kind) = kind {
            manual.entry(kind).or_default().push(id);
        }
    }
    for charge in &charges[next..] {
        manual
            .entry("charge_without_order")
            .or_default()
            .push(charge.payment.clone());
    }
    report.manual = manual;
    Ok(report)
}

impl Report {
    /// The report as printed: counts, then each manual case with its action.
    pub fn text(&self) -> String {
        let when = |ms: Option<i64>| {
            ms.map(platform_runtime::time::utc)
                .unwrap_or_else(|| "none".into())
        };
        let mut out = format!(
            "consistency: {} orders, {} approved charges; newest order write {} UTC, newest charge {} UTC\n\
             repaired by the platform: {} pending orders (the sweeper finishes them; {} already charged, found by their idempotency key, never charged again), {} unsent notifications (the outbox sends them)\n",
            self.orders,
            self.charges,
            when(self.newest_order_ms),
            when(self.newest_charge_ms),
            self.pending,
            self.pending_already_charged,
            self.unsent_notifications
        );
        if self.manual.is_empty() {
            out.push_str("needs an operator: nothing\n");
        }
        for (kind, action) in ACTIONS {
            if let Some(ids) = self.manual.get(kind) {
                let shown: Vec<&str> = ids.iter().take(10).map(String::as_str).collect();
                let more = ids.len().saturating_sub(shown.len());
                let _ = writeln!(
                    out,
                    "needs an operator: {} {action}: {}{}",
                    ids.len(),
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
        }
        out
    }
}
