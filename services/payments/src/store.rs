//! The payments tables. Exactly-once is the database's job: a unique
//! idempotency key per charge and per refund, and a conditional update that
//! cannot refund past the charged amount, even under concurrent retries.

use platform_runtime::storage::Db;
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub id: String,
    pub idempotency_key: String,
    pub order_id: String,
    pub user_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_method: String,
    pub status: String,
    pub decline_reason: String,
    pub refunded_minor: i64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRow {
    pub id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub reason: String,
    pub created_at_ms: i64,
    /// SHA-256 of the request its key stands for; NULL on rows written
    /// before it was recorded.
    pub request_fingerprint: Option<String>,
}

/// A refund to make: `amount_minor` 0 refunds what is left.
#[derive(Debug, Clone, Copy)]
pub struct NewRefund<'a> {
    pub id: &'a str,
    pub idempotency_key: &'a str,
    pub payment_id: &'a str,
    pub amount_minor: i64,
    pub reason: &'a str,
    pub request_fingerprint: &'a str,
    pub now_ms: i64,
}

const REFUND_COLUMNS: &str =
    "id, payment_id, amount_minor, reason, created_at_ms, request_fingerprint";

const PAYMENT_COLUMNS: &str = "id, idempotency_key, order_id, user_id, amount_minor, currency, \
     payment_method, status, decline_reason, refunded_minor, created_at_ms";

fn payment(row: &AnyRow) -> Result<PaymentRow, sqlx::Error> {
    Ok(PaymentRow {
        id: row.try_get(0)?,
        idempotency_key: row.try_get(1)?,
        order_id: row.try_get(2)?,
        user_id: row.try_get(3)?,
        amount_minor: row.try_get(4)?,
        currency: row.try_get(5)?,
        payment_method: row.try_get(6)?,
        status: row.try_get(7)?,
        decline_reason: row.try_get(8)?,
        refunded_minor: row.try_get(9)?,
        created_at_ms: row.try_get(10)?,
    })
}

fn refund(row: &AnyRow) -> Result<RefundRow, sqlx::Error> {
    Ok(RefundRow {
        id: row.try_get(0)?,
        payment_id: row.try_get(1)?,
        amount_minor: row.try_get(2)?,
        reason: row.try_get(3)?,
        created_at_ms: row.try_get(4)?,
        request_fingerprint: row.try_get(5)?,
    })
}

/// How a refund attempt ended.
#[derive(Debug)]
pub enum RefundOutcome {
    Done(RefundRow),
    /// The idempotency key was used before: this is the earlier refund.
    Replayed(RefundRow),
    NoSuchPayment,
    /// The payment cannot give back that much; it is returned as it stands.
    Refused(PaymentRow),
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Inserts the charge unless its key exists, then returns the row stored
    /// under the key: the new one, or the one of an earlier (racing) retry.
    pub async fn insert_payment(&self, new: &PaymentRow) -> Result<PaymentRow, sqlx::Error> {
        let new = std::sync::Arc::new(new.clone());
        self.db
            .write(move |conn| {
                let new = std::sync::Arc::clone(&new);
                Box::pin(async move {
                    // The new row comes back from the insert itself; only a
                    // retry (the key taken) costs a second query.
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO payments (id, idempotency_key, order_id, user_id, amount_minor, currency, \
                         payment_method, status, decline_reason, refunded_minor, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10) \
                         ON CONFLICT (idempotency_key) DO NOTHING RETURNING {PAYMENT_COLUMNS}"
                    ))
                    .bind(&new.id)
                    .bind(&new.idempotency_key)
                    .bind(&new.order_id)
                    .bind(&new.user_id)
                    .bind(new.amount_minor)
                    .bind(&new.currency)
                    .bind(&new.payment_method)
                    .bind(&new.status)
                    .bind(&new.decline_reason)
                    .bind(new.created_at_ms)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(row) = inserted {
                        return payment(&row);
                    }
                    let row = sqlx::query(&format!(
                        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE idempotency_key = $1"
                    ))
                    .bind(&new.idempotency_key)
                    .fetch_one(&mut *conn)
                    .await?;
                    payment(&row)
                })
            })
            .await
    }

    /// A payment by id, only if it belongs to `user_id` when one is given.
    pub async fn payment(
        &self,
        id: &str,
        user_id: Option<&str>,
    ) -> Result<Option<PaymentRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND ($2 = '' OR user_id = $2)"
        ))
        .bind(id)
        .bind(user_id.unwrap_or(""))
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(payment).transpose()
    }

    /// Payments of an order, oldest first, after the cursor `after`.
    pub async fn payments_of_order(
        &self,
        order_id: &str,
        user_id: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<PaymentRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments \
             WHERE order_id = $1 AND ($2 = '' OR user_id = $2) AND id > $3 ORDER BY id LIMIT $4"
        ))
        .bind(order_id)
        .bind(user_id.unwrap_or(""))
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(payment).collect()
    }

    /// Refunds `amount_minor` (0: all that is left) in one transaction whose
    /// first statement writes, so SQLite takes its write lock up front.
    pub async fn refund(&self, new: NewRefund<'_>) -> Result<RefundOutcome, sqlx::Error> {
        let NewRefund {
            id,
            idempotency_key,
            payment_id,
            amount_minor,
            reason,
            request_fingerprint,
            now_ms,
        } = new;
        let mut tx = self.db.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO refunds (id, idempotency_key, payment_id, amount_minor, reason, created_at_ms, request_fingerprint) \
             SELECT $1, $2, p.id, CASE WHEN $3 > 0 THEN $3 ELSE p.amount_minor - p.refunded_minor END, $4, $5, $7 \
             FROM payments p WHERE p.id = $6 \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(id)
        .bind(idempotency_key)
        .bind(amount_minor)
        .bind(reason)
        .bind(now_ms)
        .bind(payment_id)
        .bind(request_fingerprint)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(match self.refund_by_key(idempotency_key).await? {
                Some(earlier) => RefundOutcome::Replayed(earlier),
                None => RefundOutcome::NoSuchPayment,
            });
        }
        let updated = sqlx::query(
            "UPDATE payments SET refunded_minor = refunded_minor + r.amount_minor \
             FROM (SELECT amount_minor FROM refunds WHERE idempotency_key = $1) AS r \
             WHERE payments.id = $2 AND payments.status = 'approved' AND r.amount_minor > 0 \
             AND payments.refunded_minor + r.amount_minor <= payments.amount_minor",
        )
        .bind(idempotency_key)
        .bind(payment_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(match self.payment(payment_id, None).await? {
                Some(p) => RefundOutcome::Refused(p),
                None => RefundOutcome::NoSuchPayment,
            });
        }
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE idempotency_key = $1"
        ))
        .bind(idempotency_key)
        .fetch_one(&mut *tx)
        .await?;
        let done = refund(&row)?;
        tx.commit().await?;
        Ok(RefundOutcome::Done(done))
    }

    async fn refund_by_key(&self, key: &str) -> Result<Option<RefundRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE idempotency_key = $1"
        ))
        .bind(key)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(refund).transpose()
    }
}
