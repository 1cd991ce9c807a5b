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

/// Reads both databases in step, one pass each in order-id order, holding
/// only the current order's charges: constant memory at any size.
pub async fn check(orders: &DatabaseConfig, payments: &DatabaseConfig) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut pay = connect(payments).await?;
    let mut ord = connect(orders).await?;
    let unsent: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE sent_at_ms IS NULL")
        .fetch_one(&mut ord)
        .await?;
    report.unsent_notifications = u64::try_from(unsent.0).unwrap_or(0);
    let charges_sql = format!(
        "SELECT id, order_id, amount_minor, refunded_minor, created_at_ms FROM payments \
         WHERE status = 'approved' ORDER BY {}",
        order_by_id(payments, "order_id")
    );
    let orders_sql = format!(
        "SELECT id, status, total_minor, updated_at_ms FROM orders ORDER BY {}",
        order_by_id(orders, "id")
    );
    let mut charge_rows = sqlx::query(&charges_sql).fetch(&mut pay);
    let mut next_charge = async |report: &mut Report| -> anyhow::Result<Option<Charge>> {
        let Some(row) = charge_rows.try_next().await? else {
            return Ok(None);
        };
        let created: i64 = row.try_get(4)?;
        report.charges += 1;
        report.newest_charge_ms = report.newest_charge_ms.max(Some(created));
        Ok(Some(Charge {
            payment: row.try_get(0)?,
            order: row.try_get(1)?,
            amount: row.try_get(2)?,
            refunded: row.try_get(3)?,
        }))
    };
    let mut ahead = next_charge(&mut report).await?;
    let mut manual: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut rows = sqlx::query(&orders_sql).fetch(&mut ord);
    while let Some(row) = rows.try_next().await? {
        let id: String = row.try_get(0)?;
        let status: String = row.try_get(1)?;
        let total: i64 = row.try_get(2)?;
        let updated: i64 = row.try_get(3)?;
        report.orders += 1;
        report.newest_order_ms = report.newest_order_ms.max(Some(updated));
        // The charges up to this id: its own, and those of ids that sort
        // before it, whose order is not here.
        let mut mine = Vec::new();
        while let Some(charge) = ahead.take_if(|c| c.order.as_str() <= id.as_str()) {
            if charge.order == id {
                mine.push(charge);
            } else {
                manual
                    .entry("charge_without_order")
                    .or_default()
                    .push(charge.payment);
            }
            ahead = next_charge(&mut report).await?;
        }
        let live = mine.iter().filter(|c| c.refunded < c.amount).count();
        let kind = match status.as_str() {
            "pending" => {
                report.pending += 1;
                report.pending_already_charged += u64::from(!mine.is_empty());
                (mine.len() > 1).then_some("charged_twice")
            }
            "paid" if mine.is_empty() => Some("paid_without_charge"),
            "paid" if mine.len() > 1 => Some("charged_twice"),
            "paid" if mine[0].amount != total => Some("amount_differs"),
            "payment_failed" if live > 0 => Some("failed_but_charged"),
            _ if live > 1 => Some("charged_twice"),
            _ => None,
        };
        if let Some(kind) = kind {
            manual.entry(kind).or_default().push(id);
        }
    }
    while let Some(charge) = ahead {
        manual
            .entry("charge_without_order")
            .or_default()
            .push(charge.payment);
        ahead = next_charge(&mut report).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn database(path: &std::path::Path, statements: &[&str]) -> DatabaseConfig {
        sqlx::any::install_default_drivers();
        let mut db = AnyConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .expect("create");
        for statement in statements {
            sqlx::query(statement)
                .execute(&mut db)
                .await
                .expect(statement);
        }
        DatabaseConfig::Sqlite(path.to_owned())
    }

    #[tokio::test]
    async fn every_order_meets_its_charges_and_strays_anywhere_are_found() {
        let dir = tempfile::tempdir().expect("dir");
        let orders = database(
            &dir.path().join("orders.db"),
            &[
                "CREATE TABLE orders (id TEXT PRIMARY KEY, status TEXT, total_minor INTEGER, updated_at_ms INTEGER)",
                "CREATE TABLE outbox (id INTEGER PRIMARY KEY, sent_at_ms INTEGER)",
                "INSERT INTO outbox (sent_at_ms) VALUES (NULL), (5), (NULL)",
                "INSERT INTO orders VALUES ('o1','paid',100,10), ('o2','paid',100,11), \
                 ('o3','paid',100,12), ('o4','paid',100,13), ('o5','payment_failed',100,14), \
                 ('o6','pending',100,15), ('o7','payment_failed',100,16), ('o8','pending',100,9)",
            ],
        )
        .await;
        let payments = database(
            &dir.path().join("payments.db"),
            &[
                "CREATE TABLE payments (id TEXT PRIMARY KEY, order_id TEXT, status TEXT, \
                 amount_minor INTEGER, refunded_minor INTEGER, created_at_ms INTEGER)",
                "INSERT INTO payments VALUES ('p0','o0','approved',100,0,1), \
                 ('p1','o1','approved',100,0,2), ('p3a','o3','approved',100,0,3), \
                 ('p3b','o3','approved',100,0,4), ('p4','o4','approved',90,0,5), \
                 ('p45','o45','approved',100,0,6), ('p5','o5','approved',100,0,7), \
                 ('p6','o6','approved',100,0,8), ('p7','o7','approved',100,100,9), \
                 ('p7d','o7','declined',100,0,20), ('p9','o9','approved',100,0,10)",
            ],
        )
        .await;
        let report = check(&orders, &payments).await.expect("report");
        let ids = |kind: &str| report.manual.get(kind).cloned().unwrap_or_default();
        assert_eq!(ids("charge_without_order"), ["p0", "p45", "p9"]);
        assert_eq!(ids("paid_without_charge"), ["o2"]);
        assert_eq!(ids("charged_twice"), ["o3"]);
        assert_eq!(ids("amount_differs"), ["o4"]);
        assert_eq!(ids("failed_but_charged"), ["o5"]);
        assert_eq!(report.manual.len(), 5, "{:?}", report.manual);
        assert_eq!((report.orders, report.charges), (8, 10));
        assert_eq!((report.pending, report.pending_already_charged), (2, 1));
        assert_eq!(report.unsent_notifications, 2);
        assert_eq!(report.newest_order_ms, Some(16));
        assert_eq!(report.newest_charge_ms, Some(10));
    }
}
