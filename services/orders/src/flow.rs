//! Driving an order to its end: charge, record the outcome with its
//! notification, deliver the notification. Everything here is safe to run
//! twice and from two processes at once (blue and green share the tables):
//! the charge is idempotent by order id, status moves are conditional, and
//! outbox rows are claimed before they are sent.

use std::time::Duration;

use platform_runtime::host::StreamsEnd;
use platform_runtime::{ids, storage, time};
use tonic::Status;

use crate::downstream::{Charged, Downstream};
use crate::store::{self, OrderRow, OutboxRow, Store, Transition};

/// How long a claimed delivery is reserved before another process may retry it.
pub const DELIVERY_LEASE_MS: i64 = 30_000;
/// Longest wait between two delivery attempts.
const MAX_BACKOFF_MS: i64 = 300_000;
/// Rows a step of the payment-token backfill fills at most, and steps per sweep.
const BACKFILL_BATCH: i64 = 500;
const BACKFILL_STEPS_PER_SWEEP: usize = 20;
/// Sweeps after a complete pass before the backfill looks again (release
/// 0.1.0 may still be writing rows without a token during a rollout): a
/// minute at the default interval.
const BACKFILL_REPASS_SWEEPS: u32 = 30;

/// Where the payment-token backfill stands between sweeps: the last id it
/// looked at, or, after a complete pass, how many sweeps to sit out.
#[derive(Debug, Default)]
pub struct Backfill {
    after: String,
    idle_sweeps: u32,
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub store: Store,
    pub downstream: Downstream,
}

/// A notification about `order`.
pub fn notice(order: &OrderRow, kind: &str, subject: String, body: String) -> OutboxRow {
    OutboxRow {
        id: ids::new_id("obx"),
        order_id: order.id.clone(),
        user_id: order.user_id.clone(),
        kind: kind.to_owned(),
        subject,
        body,
        attempts: 0,
        next_attempt_at_ms: 0,
    }
}

/// `1234` minor units of EUR as `12.34 EUR`.
pub fn money(minor: i64, currency: &str) -> String {
    const ZERO_DECIMALS: [&str; 6] = ["JPY", "KRW", "VND", "CLP", "ISK", "UGX"];
    if ZERO_DECIMALS.contains(&currency) {
        format!("{minor} {currency}")
    } else {
        format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
    }
}

impl Flow {
    /// Charges a pending order and records the outcome. Returns the order as
    /// it stands afterwards (still pending when payments was unreachable).
    pub async fn drive(&self, order: OrderRow) -> Result<OrderRow, Status> {
        let outcome = self.downstream.charge(&order).await;
        let total = money(order.total_minor, &order.currency);
        let (to, payment_id, reason, note) = match outcome {
            Charged::Approved { payment_id } => (
                store::PAID,
                payment_id,
                String::new(),
                notice(
                    &order,
                    "order.paid",
                    format!("Order {} is paid", order.id),
                    format!("We charged {total}."),
                ),
            ),
            Charged::Declined { payment_id, reason } => {
                let note = notice(
                    &order,
                    "order.payment_failed",
                    format!("Payment for order {} failed", order.id),
                    format!("The charge of {total} was declined ({reason})."),
                );
                (store::PAYMENT_FAILED, payment_id, reason, note)
            }
            Charged::Rejected { reason } => {
                let note = notice(
                    &order,
                    "order.payment_failed",
                    format!("Payment for order {} failed", order.id),
                    reason.clone(),
                );
                (store::PAYMENT_FAILED, String::new(), reason, note)
            }
            Charged::Retry(status) => {
                tracing::warn!(order_id = %order.id, code = status.code() as i32, error = status.message(),
                    "charge failed; the order stays pending and will be retried");
                return Ok(order);
            }
        };
        let moved = self
            .store
            .transition(
                Transition {
                    order_id: &order.id,
                    from: store::PENDING,
                    to,
                    payment_id: &payment_id,
                    failure_reason: &reason,
                    claim_ms: DELIVERY_LEASE_MS,
                },
                &note,
            )
            .await
            .map_err(storage::status)?;
        let Some(moved_at_ms) = moved else {
            // Another process moved it first: read what it decided.
            return self
                .store
                .order(&order.id, None)
                .await
                .map_err(storage::status)?
                .ok_or_else(|| Status::internal("order vanished"));
        };
        tracing::info!(order_id = %order.id, status = to, payment_id, "order charged");
        self.deliver_claimed(note);
        // The row as this move wrote it: no need to read it back.
        let mut order = order;
        order.status = to.to_owned();
        if !payment_id.is_empty() {
            order.payment_id = payment_id;
        }
        order.failure_reason = reason;
        order.updated_at_ms = moved_at_ms;
        Ok(order)
    }

    /// Delivers, in the background, a notification this process wrote
    /// claimed (`Transition::claim_ms`): no lookup and no claim needed; if
    /// the process dies first, the claim runs out and the sweeper sends it.
    pub fn deliver_claimed(&self, row: OutboxRow) {
        let flow = self.clone();
        // Part of the request's trace, though the response does not wait for it.
        let delivery = async move {
            if let Err(err) = flow.deliver(&row).await {
                tracing::warn!(outbox_id = %row.id, error = %err, "notification delivery deferred");
            }
        };
        tokio::spawn(tracing::Instrument::instrument(
            delivery,
            tracing::Span::current(),
        ));
    }

    /// Sends one claimed outbox row; a failure is rescheduled with
    /// exponential backoff, never dropped.
    async fn deliver(&self, row: &OutboxRow) -> Result<(), sqlx::Error> {
        match self.downstream.notify(row).await {
            Ok(()) => self.store.outbox_sent(&row.id, time::now_ms()).await,
            Err(status) => {
                let backoff = (1_000i64 << row.attempts.clamp(0, 20)).min(MAX_BACKOFF_MS);
                tracing::warn!(outbox_id = %row.id, attempts = row.attempts + 1, backoff_ms = backoff,
                    error = status.message(), "notification not delivered; will retry");
                self.store
                    .outbox_retry_at(&row.id, time::now_ms() + backoff)
                    .await
            }
        }
    }

    /// Sends every due outbox row; failures are
    /// rescheduled with exponential backoff, never dropped.
    pub async fn deliver_due(&self) -> Result<(), sqlx::Error> {
        let now = time::now_ms();
        for row in self.store.due_outbox(now, 100).await? {
            if !self
                .store
                .claim_outbox(&row, now + DELIVERY_LEASE_MS)
                .await?
            {
                continue;
            }
            self.deliver(&row).await?;
        }
        Ok(())
    }

    /// Finishes what a crashed or cut-off request left: pending orders not
    /// touched for `stale_after`, and notifications that are due.
    pub async fn sweep(&self, stale_after: Duration) -> Result<(), sqlx::Error> {
        let now = time::now_ms();
        let stale_ms = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        for order in self.store.stale_pending(now - stale_ms, 50).await? {
            if !self
                .store
                .touch_pending(&order.id, order.updated_at_ms, now)
                .await?
            {
                continue;
            }
            tracing::info!(order_id = %order.id, "resuming a pending order");
            if let Err(status) = self.drive(order).await {
                tracing::warn!(error = status.message(), "resuming failed");
            }
        }
        self.deliver_due().await
    }

    /// Runs a few steps of the payment-token backfill
    /// (`Store::backfill_payment_tokens`); true when a pass just completed.
    pub async fn backfill(&self, state: &mut Backfill) -> Result<bool, sqlx::Error> {
        if state.idle_sweeps > 0 {
            state.idle_sweeps -= 1;
            return Ok(false);
        }
        for _ in 0..BACKFILL_STEPS_PER_SWEEP {
            match self
                .store
                .backfill_payment_tokens(&state.after, BACKFILL_BATCH)
                .await?
            {
                Some(last) => state.after = last,
                None => {
                    tracing::debug!("every order has its payment_token");
                    state.after.clear();
                    state.idle_sweeps = BACKFILL_REPASS_SWEEPS;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Sweeps every `interval` until the service stops.
    pub async fn run_sweeper(self, interval: Duration, stale_after: Duration, mut end: StreamsEnd) {
        let mut backfill = Backfill::default();
        loop {
            tokio::select! {
                _ = end.wait() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(err) = self.sweep(stale_after).await {
                tracing::warn!(error = %err, "sweep failed");
            }
            if let Err(err) = self.backfill(&mut backfill).await {
                tracing::warn!(error = %err, "payment_token backfill step failed; it resumes at the next sweep");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_money() {
        assert_eq!(super::money(1234, "EUR"), "12.34 EUR");
        assert_eq!(super::money(5, "USD"), "0.05 USD");
        assert_eq!(super::money(500, "JPY"), "500 JPY");
    }
}
