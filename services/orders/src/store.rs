//! The orders tables. A status only moves forward through conditional
//! updates (`WHERE status = <expected>`), so concurrent drivers of one order
//! (a request, a retry, the sweeper of the other color) cannot undo each
//! other, and the notification it causes is written in the same transaction.

use std::collections::HashMap;

use platform_runtime::storage::{self, Db};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub request_id: Option<String>,
    pub status: String,
    pub total_minor: i64,
    pub currency: String,
    pub payment_method: String,
    pub payment_id: String,
    pub failure_reason: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// SHA-256 of the order its `request_id` stands for; NULL on rows written
    /// before it was recorded.
    pub request_fingerprint: Option<String>,
    pub items: Vec<ItemRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: String,
    pub order_id: String,
    pub user_id: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
}

pub const PENDING: &str = "pending";
pub const PAID: &str = "paid";
pub const PAYMENT_FAILED: &str = "payment_failed";
pub const CANCELLED: &str = "cancelled";

/// Where the payment method is: under two names from migration 3 (expand:
/// `payment_token` beside `payment_method`) until migration 4 (contract)
/// drops `payment_method`. Release 0.3.0 runs on either side of migration 4:
/// before it, it writes both names and reads `payment_token` falling back to
/// `payment_method` (rows release 0.1.0 wrote, until the backfill reaches
/// them), as 0.2.0 does; after it, `payment_token` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Both,
    TokenOnly,
}

/// Migration 4, the contract step that drops `payment_method`.
pub const CONTRACTED_AT: i64 = 4;

const ORDER_COLUMNS_BOTH: &str = "id, user_id, request_id, status, total_minor, currency, \
     COALESCE(payment_token, payment_method), payment_id, failure_reason, created_at_ms, \
     updated_at_ms, request_fingerprint";
const ORDER_COLUMNS_TOKEN: &str = "id, user_id, request_id, status, total_minor, currency, \
     payment_token, payment_id, failure_reason, created_at_ms, updated_at_ms, request_fingerprint";
/// The order columns qualified for a join with its items, in the same order.
const JOINED_ORDER_BOTH: &str = "SELECT o.id, o.user_id, o.request_id, o.status, o.total_minor, o.currency, \
     COALESCE(o.payment_token, o.payment_method), o.payment_id, o.failure_reason, o.created_at_ms, \
     o.updated_at_ms, o.request_fingerprint, i.sku, i.quantity, i.unit_price_minor \
     FROM orders o LEFT JOIN order_items i ON i.order_id = o.id";
const JOINED_ORDER_TOKEN: &str = "SELECT o.id, o.user_id, o.request_id, o.status, o.total_minor, o.currency, \
     o.payment_token, o.payment_id, o.failure_reason, o.created_at_ms, \
     o.updated_at_ms, o.request_fingerprint, i.sku, i.quantity, i.unit_price_minor \
     FROM orders o LEFT JOIN order_items i ON i.order_id = o.id";
/// An insert: the method under both names ($7 twice), or the new one only.
const INSERT_BOTH: &str = "INSERT INTO orders (id, user_id, request_id, status, total_minor, currency, \
     payment_token, payment_id, failure_reason, created_at_ms, updated_at_ms, request_fingerprint, \
     payment_method) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $7)";
const INSERT_TOKEN: &str = "INSERT INTO orders (id, user_id, request_id, status, total_minor, currency, \
     payment_token, payment_id, failure_reason, created_at_ms, updated_at_ms, request_fingerprint) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

impl Shape {
    fn columns(self) -> &'static str {
        match self {
            Shape::Both => ORDER_COLUMNS_BOTH,
            Shape::TokenOnly => ORDER_COLUMNS_TOKEN,
        }
    }

    fn joined(self) -> &'static str {
        match self {
            Shape::Both => JOINED_ORDER_BOTH,
            Shape::TokenOnly => JOINED_ORDER_TOKEN,
        }
    }

    fn insert(self) -> &'static str {
        match self {
            Shape::Both => INSERT_BOTH,
            Shape::TokenOnly => INSERT_TOKEN,
        }
    }
}

const OUTBOX_COLUMNS: &str =
    "id, order_id, user_id, kind, subject, body, attempts, next_attempt_at_ms";

fn order(row: &sqlx::any::AnyRow) -> Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        request_id: row.try_get(2)?,
        status: row.try_get(3)?,
        total_minor: row.try_get(4)?,
        currency: row.try_get(5)?,
        payment_method: row.try_get(6)?,
        payment_id: row.try_get(7)?,
        failure_reason: row.try_get(8)?,
        created_at_ms: row.try_get(9)?,
        updated_at_ms: row.try_get(10)?,
        request_fingerprint: row.try_get(11)?,
        items: Vec::new(),
    })
}

fn outbox(row: &sqlx::any::AnyRow) -> Result<OutboxRow, sqlx::Error> {
    Ok(OutboxRow {
        id: row.try_get(0)?,
        order_id: row.try_get(1)?,
        user_id: row.try_get(2)?,
        kind: row.try_get(3)?,
        subject: row.try_get(4)?,
        body: row.try_get(5)?,
        attempts: row.try_get(6)?,
        next_attempt_at_ms: row.try_get(7)?,
    })
}

/// A status move of one order; an empty `payment_id` keeps the stored one.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    pub order_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub payment_id: &'a str,
    pub failure_reason: &'a str,
    /// The notification is written already claimed by this process for
    /// this long (it delivers it at once); 0 leaves it due for any process.
    pub claim_ms: i64,
}

/// What inserting a new order found.
#[derive(Debug)]
pub enum Created {
    New,
    /// The same user already sent this request id.
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    /// Migration 4 applied: `payment_method` is gone.
    contracted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Store {
    pub fn new(db: Db) -> Self {
        let contracted = db.schema().database >= CONTRACTED_AT;
        Self {
            db,
            contracted: std::sync::Arc::new(contracted.into()),
        }
    }

    fn shape(&self) -> Shape {
        if self.contracted.load(std::sync::atomic::Ordering::Relaxed) {
            Shape::TokenOnly
        } else {
            Shape::Both
        }
    }

    /// Runs `query` in the current shape; when it fails in the old shape
    /// because migration 4 was applied meanwhile (`platformctl migrate
    /// --contract` while this process runs), notes it and runs it again in
    /// the new shape, so the contract step costs no failed call.
    async fn shaped<T, Fut>(&self, query: impl Fn(Shape) -> Fut) -> Result<T, sqlx::Error>
    where
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let shape = self.shape();
        match query(shape).await {
            Err(_) if shape == Shape::Both && self.contracted_now().await => {
                query(Shape::TokenOnly).await
            }
            answer => answer,
        }
    }

    /// Whether migration 4 is applied now (remembered once it is).
    async fn contracted_now(&self) -> bool {
        let applied: Result<i64, _> =
            sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations WHERE version = $1")
                .bind(CONTRACTED_AT)
                .fetch_one(self.db.pool())
                .await;
        let contracted = matches!(applied, Ok(1));
        if contracted {
            tracing::info!(
                "migration {CONTRACTED_AT} applied: payment_method is gone; reading and writing payment_token only"
            );
            self.contracted
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        contracted
    }

    pub fn pool(&self) -> &sqlx::AnyPool {
        self.db.pool()
    }

    /// Stores a pending order and its items in one transaction.
    pub async fn create(&self, row: &OrderRow) -> Result<Created, sqlx::Error> {
        let row = std::sync::Arc::new(row.clone());
        let written = self
            .shaped(|shape| self.insert(shape, std::sync::Arc::clone(&row)))
            .await;
        match written {
            Ok(()) => Ok(Created::New),
            Err(err) if storage::is_unique_violation(&err) => Ok(Created::Duplicate),
            Err(err) => Err(err),
        }
    }

    async fn insert(&self, shape: Shape, row: std::sync::Arc<OrderRow>) -> Result<(), sqlx::Error> {
        self.db
            .write(move |conn| {
                let row = std::sync::Arc::clone(&row);
                Box::pin(async move {
                    sqlx::query(shape.insert())
                    .bind(&row.id)
                    .bind(&row.user_id)
                    .bind(row.request_id.as_deref())
                    .bind(&row.status)
                    .bind(row.total_minor)
                    .bind(&row.currency)
                    .bind(&row.payment_method)
                    .bind(&row.payment_id)
                    .bind(&row.failure_reason)
                    .bind(row.created_at_ms)
                    .bind(row.updated_at_ms)
                    .bind(row.request_fingerprint.as_deref())
                    .execute(&mut *conn)
                    .await?;
                    for (line, item) in row.items.iter().enumerate() {
                        sqlx::query(
                            "INSERT INTO order_items (order_id, line, sku, quantity, unit_price_minor) VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(&row.id)
                        .bind(i64::try_from(line).unwrap_or(i64::MAX))
                        .bind(&item.sku)
                        .bind(item.quantity)
                        .bind(item.unit_price_minor)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// `rows` of orders with their items, read in one query.
    async fn all_with_items(
        &self,
        rows: &[sqlx::any::AnyRow],
    ) -> Result<Vec<OrderRow>, sqlx::Error> {
        let mut orders = rows.iter().map(order).collect::<Result<Vec<_>, _>>()?;
        if orders.is_empty() {
            return Ok(orders);
        }
        let placeholders = (1..=orders.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT order_id, sku, quantity, unit_price_minor FROM order_items \
             WHERE order_id IN ({placeholders}) ORDER BY order_id, line"
        );
        let mut query = sqlx::query(&sql);
        for row in &orders {
            query = query.bind(row.id.clone());
        }
        let mut items: HashMap<String, Vec<ItemRow>> = HashMap::new();
        for r in query.fetch_all(self.db.pool()).await? {
            items.entry(r.try_get(0)?).or_default().push(ItemRow {
                sku: r.try_get(1)?,
                quantity: r.try_get(2)?,
                unit_price_minor: r.try_get(3)?,
            });
        }
        for row in &mut orders {
            row.items = items.remove(&row.id).unwrap_or_default();
        }
        Ok(orders)
    }

    /// The one order of a join with its items (`JOINED_ORDER` rows), if any.
    fn joined(rows: &[sqlx::any::AnyRow]) -> Result<Option<OrderRow>, sqlx::Error> {
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut row = order(first)?;
        for r in rows {
            if let Some(sku) = r.try_get::<Option<String>, _>(12)? {
                row.items.push(ItemRow {
                    sku,
                    quantity: r.try_get(13)?,
                    unit_price_minor: r.try_get(14)?,
                });
            }
        }
        Ok(Some(row))
    }

    /// An order of `user_id` (any user's with `None`).
    pub async fn order(
        &self,
        id: &str,
        user_id: Option<&str>,
    ) -> Result<Option<OrderRow>, sqlx::Error> {
        // One query for the order and its items.
        let rows = self
            .shaped(|shape| async move {
                sqlx::query(&format!(
                    "{} WHERE o.id = $1 AND ($2 = '' OR o.user_id = $2) ORDER BY i.line",
                    shape.joined()
                ))
                .bind(id)
                .bind(user_id.unwrap_or(""))
                .fetch_all(self.db.pool())
                .await
            })
            .await?;
        Self::joined(&rows)
    }

    pub async fn by_request(
        &self,
        user_id: &str,
        request_id: &str,
    ) -> Result<Option<OrderRow>, sqlx::Error> {
        let rows = self
            .shaped(|shape| async move {
                sqlx::query(&format!(
                    "{} WHERE o.user_id = $1 AND o.request_id = $2 ORDER BY i.line",
                    shape.joined()
                ))
                .bind(user_id)
                .bind(request_id)
                .fetch_all(self.db.pool())
                .await
            })
            .await?;
        Self::joined(&rows)
    }

    /// A user's orders, newest first, before the cursor `before`.
    pub async fn page(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OrderRow>, sqlx::Error> {
        let rows = self
            .shaped(|shape| async move {
                sqlx::query(&format!(
                    "SELECT {} FROM orders WHERE user_id = $1 AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3",
                    shape.columns()
                ))
                .bind(user_id)
                .bind(before.unwrap_or(""))
                .bind(limit)
                .fetch_all(self.db.pool())
                .await
            })
            .await?;
        self.all_with_items(&rows).await
    }

    /// Moves an order from `from` to `to`, with the notification it causes.
    /// The time of the move (its `updated_at_ms`), or None when the order
    /// was no longer in `from` (someone else moved it).
    pub async fn transition(
        &self,
        step: Transition<'_>,
        notify: &OutboxRow,
    ) -> Result<Option<i64>, sqlx::Error> {
        let (id, from, to) = (
            step.order_id.to_owned(),
            step.from.to_owned(),
            step.to.to_owned(),
        );
        let (payment_id, failure_reason, claim_ms) = (
            step.payment_id.to_owned(),
            step.failure_reason.to_owned(),
            step.claim_ms,
        );
        let notify = notify.clone();
        self.db
            .write(move |conn| {
                let (id, from, to) = (id.clone(), from.clone(), to.clone());
                let (payment_id, failure_reason) = (payment_id.clone(), failure_reason.clone());
                let notify = notify.clone();
                Box::pin(async move {
                    let now_ms = platform_runtime::time::now_ms();
                    let updated = sqlx::query(
                        "UPDATE orders SET status = $1, payment_id = CASE WHEN $2 = '' THEN payment_id ELSE $2 END, \
                         failure_reason = $3, updated_at_ms = $4 WHERE id = $5 AND status = $6",
                    )
                    .bind(&to)
                    .bind(&payment_id)
                    .bind(&failure_reason)
                    .bind(now_ms)
                    .bind(&id)
                    .bind(&from)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if updated == 0 {
                        // Nothing written: someone else moved the order.
                        return Ok(None);
                    }
                    sqlx::query(&format!(
                        "INSERT INTO outbox ({OUTBOX_COLUMNS}, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .bind(&notify.id)
                    .bind(&notify.order_id)
                    .bind(&notify.user_id)
                    .bind(&notify.kind)
                    .bind(&notify.subject)
                    .bind(&notify.body)
                    .bind(i64::from(claim_ms > 0))
                    .bind(now_ms + claim_ms)
                    .bind(now_ms)
                    .execute(&mut *conn)
                    .await?;
                    Ok(Some(now_ms))
                })
            })
            .await
    }

    /// Pending orders untouched since `before_ms`: their driver died.
    pub async fn stale_pending(
        &self,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<OrderRow>, sqlx::Error> {
        let rows = self
            .shaped(|shape| async move {
                sqlx::query(&format!(
                    "SELECT {} FROM orders WHERE status = $1 AND updated_at_ms < $2 ORDER BY updated_at_ms LIMIT $3",
                    shape.columns()
                ))
                .bind(PENDING)
                .bind(before_ms)
                .bind(limit)
                .fetch_all(self.db.pool())
                .await
            })
            .await?;
        self.all_with_items(&rows).await
    }

    /// Marks a pending order as being driven now, so other sweepers skip it.
    pub async fn touch_pending(
        &self,
        id: &str,
        seen_updated_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let id = id.to_owned();
        self.db
            .write(move |conn| {
                let id = id.clone();
                Box::pin(async move {
                    let updated = sqlx::query("UPDATE orders SET updated_at_ms = $1 WHERE id = $2 AND status = $3 AND updated_at_ms = $4")
                        .bind(now_ms)
                        .bind(&id)
                        .bind(PENDING)
                        .bind(seen_updated_at_ms)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    Ok(updated == 1)
                })
            })
            .await
    }

    pub async fn due_outbox(&self, now_ms: i64, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at_ms IS NULL AND next_attempt_at_ms <= $1 \
             ORDER BY next_attempt_at_ms LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(outbox).collect()
    }

    /// Takes a delivery for `lease_ms`; false when another process took it.
    pub async fn claim_outbox(&self, row: &OutboxRow, until_ms: i64) -> Result<bool, sqlx::Error> {
        let (id, seen) = (row.id.clone(), row.next_attempt_at_ms);
        self.db
            .write(move |conn| {
                let id = id.clone();
                Box::pin(async move {
                    let updated = sqlx::query(
                        "UPDATE outbox SET next_attempt_at_ms = $1, attempts = attempts + 1 \
                         WHERE id = $2 AND next_attempt_at_ms = $3 AND sent_at_ms IS NULL",
                    )
                    .bind(until_ms)
                    .bind(&id)
                    .bind(seen)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(updated == 1)
                })
            })
            .await
    }

    pub async fn outbox_sent(&self, id: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        let id = id.to_owned();
        self.db
            .write(move |conn| {
                let id = id.clone();
                Box::pin(async move {
                    sqlx::query("UPDATE outbox SET sent_at_ms = $1 WHERE id = $2")
                        .bind(now_ms)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await
                        .map(|_| ())
                })
            })
            .await
    }

    pub async fn outbox_retry_at(&self, id: &str, at_ms: i64) -> Result<(), sqlx::Error> {
        let id = id.to_owned();
        self.db
            .write(move |conn| {
                let id = id.clone();
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE outbox SET next_attempt_at_ms = $1 WHERE id = $2 AND sent_at_ms IS NULL",
                    )
                    .bind(at_ms)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
                })
            })
            .await
    }

    /// One step of the backfill of `payment_token` (until migration 4): copies `payment_method`
    /// into it on at most `batch` rows after the id `after` that lack it, in
    /// a short transaction of its own, so the table is never locked for the
    /// whole backfill. Answers the last id looked at (the next step's
    /// `after`), or None when no row after `after` lacks it. Safe to run
    /// again, from any process and after a restart: it only fills what is
    /// still empty.
    pub async fn backfill_payment_tokens(
        &self,
        after: &str,
        batch: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        self.shaped(|shape| async move {
            match shape {
                // Migration 4 copied what was left and dropped the old column.
                Shape::TokenOnly => Ok(None),
                Shape::Both => self.backfill_step(after.to_owned(), batch).await,
            }
        })
        .await
    }

    async fn backfill_step(
        &self,
        after: String,
        batch: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        self.db
            .write(move |conn| {
                let after = after.clone();
                Box::pin(async move {
                    let (last,): (Option<String>,) = sqlx::query_as(
                        "SELECT MAX(id) FROM (SELECT id FROM orders WHERE id > $1 \
                         AND payment_token IS NULL ORDER BY id LIMIT $2) AS step",
                    )
                    .bind(&after)
                    .bind(batch)
                    .fetch_one(&mut *conn)
                    .await?;
                    let Some(last) = last else {
                        return Ok(None);
                    };
                    sqlx::query(
                        "UPDATE orders SET payment_token = payment_method \
                         WHERE id > $1 AND id <= $2 AND payment_token IS NULL",
                    )
                    .bind(&after)
                    .bind(&last)
                    .execute(&mut *conn)
                    .await?;
                    Ok(Some(last))
                })
            })
            .await
    }
}
