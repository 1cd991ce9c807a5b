//! The gRPC face of payments: validation, caller checks, and the mapping
//! between rows and messages.

use platform_proto::payments::v1::{
    ChargeRequest, GetPaymentRequest, ListPaymentsRequest, ListPaymentsResponse, Payment,
    PaymentStatus, Refund, RefundRequest, payment_service_server::PaymentService,
};
use platform_runtime::caller::{Authenticator, Caller};
use platform_runtime::paging::Page;
use platform_runtime::storage::{self, Db};
use platform_runtime::validate::checked;
use platform_runtime::{ids, time};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::processor::{Decision, decide};
use crate::store::{NewRefund, PaymentRow, RefundOutcome, RefundRow, Store};

/// The scope a service token needs to charge and refund.
pub const WRITE_SCOPE: &str = "payments:write";

#[derive(Debug, Clone)]
pub struct Payments {
    store: Store,
    auth: Authenticator,
}

impl Payments {
    pub fn new(db: Db, auth: Authenticator) -> Self {
        Self {
            store: Store::new(db),
            auth,
        }
    }
}

fn to_message(row: PaymentRow) -> Payment {
    let status = match row.status.as_str() {
        "declined" => PaymentStatus::Declined,
        _ if row.refunded_minor >= row.amount_minor && row.refunded_minor > 0 => {
            PaymentStatus::Refunded
        }
        _ if row.refunded_minor > 0 => PaymentStatus::PartiallyRefunded,
        _ => PaymentStatus::Approved,
    };
    Payment {
        id: row.id,
        order_id: row.order_id,
        user_id: row.user_id,
        amount_minor: row.amount_minor,
        currency: row.currency,
        status: status.into(),
        payment_method: row.payment_method,
        decline_reason: row.decline_reason,
        refunded_minor: row.refunded_minor,
        created_at: Some(time::timestamp(row.created_at_ms)),
    }
}

/// True when the stored charge is what `new` asks for: a retry under the same
/// idempotency key, not a different charge reusing it.
fn same_charge(stored: &PaymentRow, new: &PaymentRow) -> bool {
    stored.order_id == new.order_id
        && stored.user_id == new.user_id
        && stored.amount_minor == new.amount_minor
        && stored.currency == new.currency
        && stored.payment_method == new.payment_method
}

/// What a refund's idempotency key stands for: the SHA-256 of the request
/// (payment, requested amount, reason), not the key itself.
fn refund_fingerprint(payment_id: &str, amount_minor: i64, reason: &str) -> String {
    let mut hash = Sha256::new();
    // Each field is length-prefixed, so no two different requests encode alike.
    let mut field = |bytes: &[u8]| {
        hash.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
        hash.update(bytes);
    };
    field(b"refund/v1");
    field(payment_id.as_bytes());
    field(&amount_minor.to_be_bytes());
    field(reason.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// True when the stored refund is what a request with `fingerprint` asks for.
/// Refunds stored before fingerprints were recorded have none and match.
fn same_refund(stored: &RefundRow, payment_id: &str, fingerprint: &str) -> bool {
    stored.payment_id == payment_id
        && stored
            .request_fingerprint
            .as_deref()
            .is_none_or(|f| f == fingerprint)
}

fn refund_message(row: RefundRow) -> Refund {
    Refund {
        id: row.id,
        payment_id: row.payment_id,
        amount_minor: row.amount_minor,
        reason: row.reason,
        created_at: Some(time::timestamp(row.created_at_ms)),
    }
}

#[tonic::async_trait]
impl PaymentService for Payments {
    async fn charge(&self, request: Request<ChargeRequest>) -> Result<Response<Payment>, Status> {
        self.auth.service(&request, WRITE_SCOPE).await?;
        let req = request.into_inner();
        checked(&req)?;
        let order_id = req.order_id.trim();
        let user_id = req.user_id.trim();
        let key = req.idempotency_key.trim();
        let method = req.payment_method.trim();
        let currency = req.currency.trim().to_ascii_uppercase();
        let (status, decline_reason) = match decide(method) {
            Decision::Approved => ("approved", ""),
            Decision::Declined(reason) => ("declined", reason),
        };
        let new = PaymentRow {
            id: ids::new_id("pay"),
            idempotency_key: key.to_owned(),
            order_id: order_id.to_owned(),
            user_id: user_id.to_owned(),
            amount_minor: req.amount_minor,
            currency,
            payment_method: method.to_owned(),
            status: status.to_owned(),
            decline_reason: decline_reason.to_owned(),
            refunded_minor: 0,
            created_at_ms: time::now_ms(),
        };
        let stored = self
            .store
            .insert_payment(&new)
            .await
            .map_err(storage::status)?;
        if !same_charge(&stored, &new) {
            return Err(Status::failed_precondition(format!(
                "idempotency_key {key:?} was already used for a different charge; use a new idempotency_key"
            )));
        }
        if stored.id == new.id {
            tracing::info!(payment_id = %stored.id, order_id, status, "charged");
        } else {
            tracing::info!(payment_id = %stored.id, order_id, "charge replayed by idempotency key");
        }
        Ok(Response::new(to_message(stored)))
    }

    async fn refund(&self, request: Request<RefundRequest>) -> Result<Response<Refund>, Status> {
        self.auth.service(&request, WRITE_SCOPE).await?;
        let req = request.into_inner();
        checked(&req)?;
        let payment_id = req.payment_id.trim();
        let key = req.idempotency_key.trim();
        let reason = req.reason.trim();
        let fingerprint = refund_fingerprint(payment_id, req.amount_minor, reason);
        let outcome = self
            .store
            .refund(NewRefund {
                id: &ids::new_id("ref"),
                idempotency_key: key,
                payment_id,
                amount_minor: req.amount_minor,
                reason,
                request_fingerprint: &fingerprint,
                now_ms: time::now_ms(),
            })
            .await
            .map_err(storage::status)?;
        match outcome {
            RefundOutcome::Done(row) => {
                tracing::info!(refund_id = %row.id, payment_id, amount_minor = row.amount_minor, "refunded");
                Ok(Response::new(refund_message(row)))
            }
            RefundOutcome::Replayed(row) if same_refund(&row, payment_id, &fingerprint) => {
                Ok(Response::new(refund_message(row)))
            }
            RefundOutcome::Replayed(_) => Err(Status::failed_precondition(format!(
                "idempotency_key {key:?} was already used for a different refund; use a new idempotency_key"
            ))),
            RefundOutcome::NoSuchPayment => {
                Err(Status::not_found(format!("payment {payment_id} not found")))
            }
            RefundOutcome::Refused(p) if p.status == "declined" => Err(
                Status::failed_precondition("the payment was declined: there is nothing to refund"),
            ),
            RefundOutcome::Refused(p) => Err(Status::failed_precondition(format!(
                "cannot refund {}: only {} of {} {} is left to refund",
                if req.amount_minor == 0 {
                    "the rest".to_owned()
                } else {
                    req.amount_minor.to_string()
                },
                p.amount_minor - p.refunded_minor,
                p.amount_minor,
                p.currency
            ))),
        }
    }

    async fn get_payment(
        &self,
        request: Request<GetPaymentRequest>,
    ) -> Result<Response<Payment>, Status> {
        let caller = self.auth.user_or_service(&request, WRITE_SCOPE).await?;
        checked(request.get_ref())?;
        let id = request.get_ref().payment_id.trim();
        let owner = match &caller {
            Caller::User(user) => Some(user.id.as_str()),
            Caller::Service(_) => None,
        };
        match self
            .store
            .payment(id, owner)
            .await
            .map_err(storage::status)?
        {
            Some(row) => Ok(Response::new(to_message(row))),
            None => Err(Status::not_found(format!("payment {id} not found"))),
        }
    }

    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        let caller = self.auth.user_or_service(&request, WRITE_SCOPE).await?;
        let req = request.get_ref();
        checked(req)?;
        let order_id = req.order_id.trim();
        let page = Page::parse(req.page_size, &req.page_token)?;
        let owner = match &caller {
            Caller::User(user) => Some(user.id.as_str()),
            Caller::Service(_) => None,
        };
        let mut rows = self
            .store
            .payments_of_order(
                order_id,
                owner,
                page.after.as_deref().unwrap_or(""),
                page.fetch_limit(),
            )
            .await
            .map_err(storage::status)?;
        let next_page_token = page.finish(&mut rows, |row| row.id.clone());
        Ok(Response::new(ListPaymentsResponse {
            payments: rows.into_iter().map(to_message).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refund_row(payment_id: &str, fingerprint: Option<&str>) -> RefundRow {
        RefundRow {
            id: "ref_1".into(),
            payment_id: payment_id.into(),
            amount_minor: 300,
            reason: "r".into(),
            created_at_ms: 0,
            request_fingerprint: fingerprint.map(str::to_owned),
        }
    }

    #[test]
    fn refund_fingerprint_covers_the_whole_request() {
        let base = refund_fingerprint("pay_1", 300, "test");
        assert_eq!(base, refund_fingerprint("pay_1", 300, "test"));
        for other in [
            refund_fingerprint("pay_2", 300, "test"),
            refund_fingerprint("pay_1", 0, "test"),
            refund_fingerprint("pay_1", 300, "other"),
            refund_fingerprint("pay_1", 300, ""),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn replays_match_only_the_same_request() {
        let f = refund_fingerprint("pay_1", 300, "r");
        assert!(same_refund(&refund_row("pay_1", Some(&f)), "pay_1", &f));
        assert!(
            same_refund(&refund_row("pay_1", None), "pay_1", &f),
            "rows from before fingerprints"
        );
        assert!(!same_refund(&refund_row("pay_2", None), "pay_1", &f));
        let other = refund_fingerprint("pay_1", 400, "r");
        assert!(!same_refund(
            &refund_row("pay_1", Some(&f)),
            "pay_1",
            &other
        ));
    }
}
